import ArgumentParser
import Multilevel

/// `mlm simulate`: write simulated data with known parameters to an HDF5 file, for tests and benchmarks.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write simulated data with known parameters to an HDF5 file, for tests and benchmarks.",
        discussion: """
            Designs (the formula to fit each is stored with the data):
              crossed      y ~ x + w + (1 + x | A) + (1 | B); 10,000 A levels, 2,000 B levels.
              multimember  y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | area);
                           20,000 schools (1, 2 or 3 per pupil; absent ones NaN, weight 0) and 5,000
                           areas, crossed within 500 regions (a pupil's schools and area are in one region).
              nested3      y ~ x + (1 | school/class); 2,000 schools of 8 classes (class coded 1-8 within school).
              crossed-mm   y ~ x + w + (1 + x | A) + (1 | B) + (1 | mm(s1, s2, weights = cbind(m1, m2)));
                           crossed plus 20,000 schools (1 or 2 per pupil, weighted) crossed with A and B
                           at random: the factor is nearly dense at full size (the iterative solver's case).
              ratings      y ~ x + (1 | user) + (1 | item); 200,000 users and 20,000 items (skewed
                           popularity), MovieLens-shaped: about one entry of Z'Z per row.
              survey       y ~ x + (1 | school) seen through a two-stage informative sample: schools
                           with probability proportional to size and to exp(u), pupils within them
                           with probability proportional to exp(0.5 x); columns w_pupil and w_school
                           (inverse probabilities), stratum (the school is the PSU); about a quarter
                           of the schools and 20 pupils of each. Unweighted estimates are biased.
              survey-informative
                           the same with pupils drawn with probability proportional to exp(0.5 ε):
                           informative at both stages.

            With few rows the grouping factors have fewer levels, about 20 rows each:
            min(full, max(minimum, rows / 20)), so e.g. --rows 2000 gives a fittable file.

            The file holds the group "data": one 1-D dataset per column, written in chunks (memory
            is bounded by one chunk plus the group-level effects). Its attributes are design,
            formula, rows, seed, levels_<factor> and the true values: beta_<coefficient>,
            sd_<factor>_<effect>, cor_<factor> and sigma (e.g. beta_x, sd_A_x, cor_A); survey's
            are the population's, with gamma, alpha and delta (how the two stages select).
            The data depend only on the seed, not on --chunk-rows.
            """)

    @Option(help: "The number of rows to simulate.")
    var rows: Int

    @Option(help: "The HDF5 file to write (a regular file there is replaced; a symbolic link is written through).")
    var out: String

    @Option(help: "The design: crossed, multimember, nested3, crossed-mm, ratings, survey or survey-informative.")
    var design = "crossed"

    @Option(help: "The seed of the random numbers (at most 2^53).")
    var seed: UInt64 = 1

    @Option(help: "Rows generated and written per chunk (the data do not depend on it).")
    var chunkRows = 65_536

    func run() throws {
        try reportingErrors {
            // One file: rank 0 writes it, the other ranks of an mpirun wait for the outcome.
            try Job.stage {
                guard Job.isRoot else { return }
                try requireWritable(out, option: "--out")
                let simulation = try Simulation(design: SimulationDesign(named: design), rows: rows, seed: seed)
                try simulation.write(to: out, chunkRows: chunkRows)
                let levels = simulation.levels.map { "\($0.factor) \($0.count)" }.joined(separator: ", ")
                print("wrote \(rows) rows of the \(design) design\(levels.isEmpty ? "" : " (\(levels))") to \(out), "
                    + "group \(Simulation.group); fit with: \(simulation.formula)")
            }
        }
    }
}
