import ArgumentParser
import Foundation
import Multilevel

/// `mlm fit`: fit a model, print lme4's summary, optionally write JSON and conditional modes;
/// optionally bootstrap and profile it, on every rank and thread of the job.
struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit a linear mixed model and print a summary like lme4's summary().",
        discussion: """
        Under mpirun every rank reads its share of the rows and works on bootstrap replicates and \
        profile traces; rank 0 prints and writes the results, which do not depend on the number \
        of ranks or threads.
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Write the results as JSON (lme4's names) to this file ('-': standard output, the summary then on stderr).")
    var json: String?

    @Option(help: "Write the conditional modes (BLUPs) of the random effects as CSV to this file ('-': standard output).")
    var ranef: String?

    @Flag(help: "Report each deviance evaluation (number, seconds since the start, deviance, θ) and the time of each stage on stderr.")
    var verbose = false

    @Option(help: "Parametric bootstrap with this many replicates, simulated from the fit and refit from θ̂ (lme4's bootMer).")
    var bootstrap: Int?

    @Option(help: "Seed of the bootstrap's random numbers: replicate i depends only on the seed and i.")
    var seed: UInt64 = 1

    @Option(name: .customLong("boot-ci"), help: "Bootstrap interval: perc (percentile, the default), basic or norm, as boot.ci computes them.")
    var bootCI = "perc"

    @Option(help: "Write the bootstrap replicates (index, θ, β, σ, deviance) to this .csv or .h5 file.")
    var bootstrapTable: String?

    @Flag(help: "Profile-likelihood intervals for every SD, correlation, σ and β (lme4's profile and confint).")
    var profile = false

    @Option(help: "Write the profile ζ traces as CSV to this file ('-': standard output).")
    var profileTable: String?

    @Option(help: "Confidence level of the bootstrap and profile intervals.")
    var level = 0.95

    @Option(help: "Record finished bootstrap replicates and profile traces in this file; rerunning the same command resumes from it.")
    var checkpoint: String?

    @Option(help: "Write a self-contained HTML report (index.html, with each SVG plot also beside it) into this folder.")
    var report: String?

    @Option(help: "Denominator degrees of freedom for the fixed effects' t- and F-tests: none (lme4's summary), satterthwaite or kenward-roger (lmerTest's df, p-values and type III anova).")
    var ddf = "none"

    func validate() throws {
        if DenominatorDF(rawValue: ddf) == nil {
            throw ValidationError("--ddf must be none, satterthwaite or kenward-roger")
        }
        if bootstrapTable != nil && bootstrap == nil { throw ValidationError("--bootstrap-table needs --bootstrap") }
        if profileTable != nil && !profile { throw ValidationError("--profile-table needs --profile") }
        if checkpoint != nil && bootstrap == nil && !profile { throw ValidationError("--checkpoint needs --bootstrap or --profile") }
        if !(level > 0 && level < 1) { throw ValidationError("--level must be between 0 and 1, e.g. 0.95") }
        if let b = bootstrap, b < 2 { throw ValidationError("--bootstrap needs at least 2 replicates") }
        if BootstrapOptions.IntervalType(rawValue: bootCI) == nil { throw ValidationError("--boot-ci must be perc, basic or norm") }
        try requireOneStandardOutput([(json, "--json"), (ranef, "--ranef"), (profileTable, "--profile-table")])
        if let t = bootstrapTable, !(t.hasSuffix(".csv") || t.hasSuffix(".h5")) {
            throw ValidationError("--bootstrap-table must name a .csv or .h5 file")
        }
    }

    func run() throws {
        try reportingErrors {
            // Each step is a stage that every rank ends together (Job.stage), so an error on any
            // rank, at any step, stops them all with one line.
            try Job.stage {
                guard Job.isRoot else { return }
                for (path, option) in [(json, "--json"), (ranef, "--ranef"), (bootstrapTable, "--bootstrap-table"),
                                       (profileTable, "--profile-table"), (checkpoint, "--checkpoint")] {
                    try requireWritable(path, option: option)
                }
                try requireWritableFolder(report, option: "--report")
            }
            let denominator = DenominatorDF(rawValue: ddf)!
            if let design = try Job.stage({ try model.surveyDesign() }) {
                if denominator != .none { throw InputError("--ddf is not available with --survey-weights: its tests use the design-based variance") }
                try fitSurvey(design)
                return
            }
            if let (data, options) = try Job.stage({ try model.generalizedOptions(trace: verbose && Job.isRoot ? traceLine(since: ContinuousClock.now) : nil) }) {
                if denominator != .none { throw InputError("--ddf is for linear mixed models: a GLMM's tests are z-tests, as glmer's") }
                try fitGeneralized(data, options)
                return
            }
            let (result, data) = try model.fitWithData(trace: verbose && Job.isRoot ? traceLine(since: ContinuousClock.now) : nil,
                                                       ddf: denominator)
            if verbose && Job.isRoot {
                for (stage, d) in result.timings { FileHandle.standardError.write(Data("\(stage): \(d)\n".utf8)) }
                let o = result.optimizer
                FileHandle.standardError.write(Data(("optimizer: \(o.algorithm), \(o.iterations) iterations, \(o.evaluations) deviance "
                    + "evaluations, \(o.gradients) gradients" + (o.fallback.map { " (BOBYQA took over: \($0))" } ?? "") + "\n").utf8))
            }
            let boot: BootstrapResult? = try Job.stage {
                guard let replicates = bootstrap else { return nil }
                let line = ProgressLine("bootstrap")
                return try ParametricBootstrap.run(result, options: BootstrapOptions(
                    replicates: replicates, seed: seed, level: level, type: BootstrapOptions.IntervalType(rawValue: bootCI)!,
                    threads: model.threads, checkpoint: checkpoint, communicator: Job.communicator,
                    progress: { line.update(done: $0, total: $1) }))
            }
            let profiled: ProfileResult? = try Job.stage {
                guard profile else { return nil }
                let line = ProgressLine("profile")
                let start = ContinuousClock.now
                let profiled = try ProfileLikelihood.run(result, options: ProfileOptions(
                    level: level, threads: model.threads, checkpoint: checkpoint, communicator: Job.communicator,
                    progress: { line.update(done: $0, total: $1) }))
                if verbose && Job.isRoot, let e = profiled?.totalEffort {
                    FileHandle.standardError.write(Data(("profile: \(ContinuousClock.now - start), \(e.points) points, "
                        + "\(e.evaluations) deviance evaluations, \(e.gradients) gradients, \(e.fallbacks) finished by BOBYQA\n").utf8))
                }
                return profiled
            }
            try Job.stage {
                guard Job.isRoot else { return }
                try writeOutputs(result, data: data, boot: boot, profiled: profiled)
            }
        }
    }

    /// A sampling-weighted fit: the summary and the JSON (the other outputs need a model-based fit).
    private func fitSurvey(_ design: SurveyDesign) throws {
        let refused = [(ranef != nil, "--ranef"), (bootstrap != nil, "--bootstrap"), (profile, "--profile"), (report != nil, "--report"),
                       (checkpoint != nil, "--checkpoint")].filter(\.0).map(\.1)
        if let option = refused.first {
            throw InputError("\(option) is not available with --survey-weights: a pseudo-likelihood fit's uncertainty is its linearised "
                + "(design-based) variance, which the summary reports")
        }
        var result = try model.fitSurvey(design, trace: verbose && Job.isRoot ? traceLine(since: ContinuousClock.now) : nil)
        result.level = level
        try Job.stage {
            guard Job.isRoot else { return }
            printSummary(result.summary(), outputs: [json])
            if let json { try write(result.json().serialized() + "\n", to: json) }
        }
    }

    /// A GLMM: the summary and the JSON.
    private func fitGeneralized(_ data: TableSource, _ options: GeneralizedFitOptions) throws {
        let refused = [(profile, "--profile"), (report != nil, "--report"), (checkpoint != nil, "--checkpoint")].filter(\.0).map(\.1)
        if let option = refused.first {
            throw InputError("\(option) is not available with --family yet (the fit, --bootstrap, --ranef and --json are)")
        }
        let (result, boot): (GeneralizedFitResult, BootstrapResult?) = try Job.stage {
            guard let replicates = bootstrap else { return (try GeneralizedLinearMixedModel.fit(model.formula, data: data, options: options), nil) }
            let line = ProgressLine("bootstrap")
            let both = try GeneralizedLinearMixedModel.fitWithBootstrap(model.formula, data: data, options: options, bootstrap: BootstrapOptions(
                replicates: replicates, seed: seed, level: level, type: BootstrapOptions.IntervalType(rawValue: bootCI)!,
                threads: model.threads, communicator: Job.communicator, progress: { line.update(done: $0, total: $1) }))
            return (both.fit, both.bootstrap)
        }
        if verbose && Job.isRoot {
            for (stage, d) in result.timings { FileHandle.standardError.write(Data("\(stage): \(d)\n".utf8)) }
            FileHandle.standardError.write(Data(("optimizer: BOBYQA, \(result.stages.first.evaluations) evaluations over θ, then "
                + "\(result.stages.second.evaluations) over (θ, β); \(result.pirlsIterations) PIRLS iterations\n").utf8))
        }
        try Job.stage {
            guard Job.isRoot else { return }
            printSummary(result.summary() + (boot.map { "\n" + $0.summary() } ?? ""), outputs: [json, ranef])
            if let json {
                var document = result.json()
                if case .object(var fields) = document, let boot {
                    fields.append(("bootstrap", boot.json()))
                    document = .object(fields)
                }
                try write(document.serialized() + "\n", to: json)
            }
            if let path = bootstrapTable, let boot { try boot.writeTable(to: path) }
            if let ranef { try write(result.conditionalModesCSV(), to: ranef) }
        }
    }

    /// Rank 0: the summary on stdout, then every file asked for.
    private func writeOutputs(_ result: FitResult, data: TableSource, boot: BootstrapResult?, profiled: ProfileResult?) throws {
        var text = result.summary()
        if let boot { text += "\n" + boot.summary() }
        if let profiled { text += "\n" + profiled.summary() }
        printSummary(text, outputs: [json, ranef, profileTable])
        if let json {
            var document = result.json()
            if case .object(var fields) = document {
                if let boot { fields.append(("bootstrap", boot.json())) }
                if let profiled { fields.append(("profile", profiled.json())) }
                document = .object(fields)
            }
            try write(document.serialized() + "\n", to: json)
        }
        // Conditional variances once, for both the CSV and the report's caterpillars.
        let variances = ranef != nil || report != nil ? try result.conditionalVariances() : nil
        if let ranef { try write(result.conditionalModesCSV(variances: variances), to: ranef) }
        if let path = bootstrapTable, let boot { try boot.writeTable(to: path) }
        if let path = profileTable, let profiled { try write(profiled.tracesCSV(), to: path) }
        if let report {
            try HTMLReport.write(fit: result, data: data, bootstrap: boot, profile: profiled,
                                 conditionalVariances: variances, to: report)
        }
    }
}

/// lme4's `verbose` output: one line per deviance evaluation on stderr.
private func traceLine(since start: ContinuousClock.Instant) -> @Sendable (Int, [Double], Double) -> Void {
    { evaluation, theta, deviance in
        let elapsed: Duration = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        var line = String(format: "%5d %9.3fs  deviance %.10g  theta", evaluation, seconds, deviance)
        for t in theta { line += String(format: " %.6g", t) }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
