import Foundation

// MARK: - Simulation

/// Simulated data with known parameters, written to HDF5 in chunks: test data for benchmarks.
///
/// A simulation is a design (the model and its true parameters), a number of rows and a seed.
/// `write(to:chunkRows:)` makes an HDF5 file whose group `data` holds one 1-D dataset per
/// column (the layout `HDF5Source` reads) and, as attributes of the group, everything needed
/// to fit it and check the fit:
///
/// - `design`, `formula` (the lme4 formula to fit): strings;
/// - `rows`, `seed`: numbers (doubles, exact: seeds are limited to 2^53);
/// - `levels_<factor>`: the number of levels of each grouping factor (see `levels`);
/// - the true values, named by `SimulationDesign.parameters`: `beta_<coefficient>`,
///   `sd_<factor>_<effect>`, `cor_<factor>` and `sigma`.
///
/// Grouping factors have fewer levels when `rows` is small: `min(full, max(minimum, rows / 20))`,
/// so about 20 rows per level, and a small file is still fittable. The values depend only on
/// the seed, never on the chunk size: the group-level effects are drawn first, in a fixed
/// order, then the rows in order, all from one `Xoshiro256` stream. Memory is bounded by one
/// chunk plus the group-level effects, whatever the number of rows.
///
/// ```swift
/// let simulation = try Simulation(design: .crossed, rows: 1_000_000, seed: 7)
/// try simulation.write(to: "crossed.h5")
/// let fit = try LinearMixedModel.fit(simulation.formula, data: openTable(path: "crossed.h5", table: nil))
/// ```
public struct Simulation: Sendable {
    /// The group that holds the columns and the attributes.
    public static let group = "data"

    /// The largest seed: seeds are stored exactly as a double attribute.
    public static let maximumSeed: UInt64 = 1 << 53

    public let design: SimulationDesign
    public let rows: Int
    public let seed: UInt64
    /// Each grouping factor's name (as in the attribute names) and its number of levels in this simulation
    /// (for nested3, `class` is the number of classes in each school: always 8).
    public let levels: [(factor: String, count: Int)]

    /// The lme4 formula that fits the simulated data.
    public var formula: String { design.formula }

    /// Validates the size and the seed and scales the grouping factors to `rows`.
    ///
    /// Throws `InputError` if `rows` is not positive or `seed` exceeds `maximumSeed`.
    public init(design: SimulationDesign, rows: Int, seed: UInt64 = 1) throws {
        guard rows > 0 else { throw InputError("--rows must be a positive number of rows, not \(rows)") }
        guard seed <= Simulation.maximumSeed else {
            throw InputError("--seed must be at most 2^53 = \(Simulation.maximumSeed), not \(seed)")
        }
        self.design = design
        self.rows = rows
        self.seed = seed
        levels = design.process.factors.map { factor in
            (factor.name, min(factor.full, max(factor.minimum, rows / 20)))
        }
    }

    /// Writes the simulated table and its attributes to a new HDF5 file at `path` (replacing a
    /// regular file there, writing through a symbolic link, refusing anything else: `OutputFile`).
    ///
    /// Rows are generated and appended `chunkRows` at a time; `chunkRows` is also the HDF5
    /// chunk length (at most `rows`) and does not change the values. Throws `InputError` if
    /// `chunkRows` is not positive or the file cannot be written; a failed write leaves nothing.
    public func write(to path: String, chunkRows: Int = 65_536) throws {
        guard chunkRows > 0 else { throw InputError("--chunk-rows must be a positive number of rows, not \(chunkRows)") }
        // Written beside the target and renamed onto it (`OutputFile`): a failure leaves nothing.
        try OutputFile.write(to: path) { try writeFile($0, chunkRows: chunkRows) }
    }

    /// Creates the file, writes the attributes, then the rows chunk by chunk; the writer closes the file if this throws.
    private func writeFile(_ path: String, chunkRows: Int) throws {
        let writer = try HDF5TableWriter(path: path, group: Simulation.group, columns: design.process.columns,
                                         chunkRows: min(chunkRows, rows))
        try writeAttributes(to: writer)
        var random = Xoshiro256(seed: seed)
        let process = design.process.init(levels: levels.map { $0.count }, random: &random)
        for start in stride(from: 0, to: rows, by: chunkRows) {
            try process.appendRows(min(chunkRows, rows - start), random: &random, to: writer)
        }
        try writer.close()
    }

    /// Writes the group's attributes: the description, the factors' sizes and the true values.
    private func writeAttributes(to writer: HDF5TableWriter) throws {
        try writer.setAttribute("design", design.rawValue)
        try writer.setAttribute("formula", formula)
        try writer.setAttribute("rows", Double(rows))
        try writer.setAttribute("seed", Double(seed))
        for (factor, count) in levels { try writer.setAttribute("levels_\(factor)", Double(count)) }
        for (name, value) in design.parameters { try writer.setAttribute(name, value) }
    }

}

// MARK: - Designs

/// The models `Simulation` can draw data from, each with its formula, columns and true values.
///
/// - `crossed`: `y ~ x + w + (1 + x | A) + (1 | B)`. A has 10,000 levels, B 2,000, each row
///   draws both uniformly; x, w ~ N(0, 1); y = 1 + 0.5x − 0.3w + a0[A] + a1[A]·x + b[B] + ε,
///   (a0, a1) bivariate normal with SDs 0.8 and 0.3 and correlation 0.3, b ~ N(0, 0.5²),
///   ε ~ N(0, 1). Columns y, x, w (float64), A, B (int64 codes 1…levels).
/// - `crossed-binary`: `y ~ x + w + (1 | A) + (1 | B)` for `--family binomial`: A has 10,000
///   levels, B 2,000, each row draws both uniformly; x, w ~ N(0, 1); y is 1 with probability
///   logit⁻¹(−0.5 + 0.5x − 0.3w + a[A] + b[B]), a ~ N(0, 0.8²), b ~ N(0, 0.5²), else 0.
///   Columns y, x, w (float64), A, B (int64 codes). Its parameters have no sigma.
/// - `multimember`: `y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | area)`.
///   20,000 schools and 5,000 areas in 500 regions (40 schools and 10 areas each, consecutive
///   codes); a pupil lives in an area of a region drawn uniformly and attended 1 (60%), 2 (30%)
///   or 3 (10%) distinct schools of that region, with weights normalised uniforms summing to 1
///   (0 for an absent membership). Areas and schools are crossed within a region, and pupils
///   move between schools of their region, as in a register: uniformly random memberships
///   among all 20,000 schools would link every school to every other, and the Cholesky factor
///   of Z'Z would be a dense 20,000 × 20,000 matrix (3.2 GB) for any exact method.
///   y = 2 + 0.7x + Σ w_k u[school_k] + v[area] + ε, u ~ N(0, 0.6²), v ~ N(0, 0.4²), ε ~ N(0, 1).
///   Columns y, x, school1–3 (float64 codes 1…schools, NaN when absent; school1 always
///   present), w1–w3 (float64), area (int64 codes). With fewer levels, there are
///   max(1, min(areas / 10, schools / 4)) regions.
/// - `nested3`: `y ~ x + (1 | school/class)`. 2,000 schools of 8 classes, class coded 1…8
///   within its school; a pupil draws a school, then a class, uniformly;
///   y = 0.5 + 0.4x + s[school] + c[school, class] + ε, SDs 0.7 and 0.4, σ = 1.
///   Columns y, x (float64), school, class (int64 codes).
/// - `crossed-mm`: `y ~ x + w + (1 + x | A) + (1 | B) + (1 | mm(s1, s2, weights = cbind(m1, m2)))`:
///   `crossed` with a weighted multiple-membership school effect crossed with A and B at random.
///   A has 10,000 levels, B 2,000 and there are 20,000 schools; a pupil draws A, B, then 1 (60%)
///   or 2 (40%) distinct schools uniformly among all, with weights normalised uniforms (0 for an
///   absent second school). y = 1 + 0.5x − 0.3w + a0[A] + a1[A]·x + b[B] + Σ m_k u[s_k] + ε, A and
///   B as in `crossed`, u ~ N(0, 0.6²), ε ~ N(0, 1). The schools' random crossing with A makes any
///   Cholesky factor of Z'Z nearly dense at full size: the design exercises `--ordering auto` and
///   the memory check. Columns y, x, w (float64), A, B (int64 codes), s1, s2 (float64 codes, s2 NaN
///   when absent), m1, m2 (float64).
/// - `ratings`: `y ~ x + (1 | user) + (1 | item)`, shaped like MovieLens: 200,000 users and
///   20,000 items; a row draws a user uniformly and an item with the skewed popularity of such
///   data (item ⌊20,000 u²⌋ for a uniform u: the first 1% of items get 10% of the ratings),
///   x ~ N(0, 1), y = 3.5 + 0.2x + a[user] + b[item] + ε, SDs 0.5 and 0.4, σ = 0.9. Nearly every
///   (user, item) pair is distinct, so Z'Z holds about one entry per row and its factor is dense
///   in any ordering. Columns y, x (float64), user, item (int64 codes).
/// - `survey`: `y ~ x + (1 | school)` observed through a two-stage sample, as surveys of pupils
///   are drawn (see `SurveyProcess`): schools with probability proportional to size and to
///   exp(γ u) (informative: schools with a higher effect u are sampled more often), then pupils
///   within a sampled school with probability proportional to exp(αx + δε), both by Poisson
///   sampling. Here γ = 1, α = 0.5, δ = 0: the pupils' probabilities are unequal but, given x,
///   not informative. Exponential tilting shifts a normal's mean and keeps its variance, so the
///   unweighted intercept is biased upward by about γτ² = 0.25, and the weighted one is not.
///   Population: school sizes M = 20 + ⌊exp(4 + 0.6 z)⌋, u ~ N(0, 0.5²), x ~ N(0, 1),
///   y = 1 + 0.5x + u + ε, ε ~ N(0, 1). About a quarter of the schools are sampled and 20 pupils
///   of each. Columns y, x, w_pupil (1/π of the pupil within the school), w_school (1/π of the
///   school) (float64), school (int64, the population school's code), stratum (int64: 50
///   consecutive population schools to a stratum; the PSU is the school). The sample stops at
///   `rows` pupils.
/// - `survey-informative`: the same with α = 0 and δ = 0.5: pupils with a larger residual ε are
///   sampled more often too (the unweighted intercept is biased by γτ² + δσ² = 0.75). With 20
///   pupils a school, the pseudo-likelihood's estimates keep a bias of order 1/n (about 0.03 in
///   the intercept: a cluster's weighted mean is a ratio estimator; Pfeffermann et al. 1998).
public enum SimulationDesign: String, CaseIterable, Sendable {
    case crossed
    case crossedBinary = "crossed-binary"
    case multimember
    case nested3
    case crossedMultimember = "crossed-mm"
    case ratings
    case survey
    case surveyInformative = "survey-informative"

    /// The design called `name`, or an `InputError` listing the designs.
    public init(named name: String) throws {
        guard let design = SimulationDesign(rawValue: name) else {
            let names = SimulationDesign.allCases.map(\.rawValue).joined(separator: ", ")
            throw InputError("unknown design '\(name)': use one of \(names)")
        }
        self = design
    }

    /// The lme4 formula that fits the design's data.
    public var formula: String { process.formula }

    /// The true parameter values, by attribute name: fixed effects, random terms in lme4's order, σ.
    ///
    /// `beta_<coefficient>` for fixed effects (lme4's names), `sd_<group>_<effect>` for the
    /// standard deviation of a random effect and `cor_<group>` for the correlation of a group's
    /// two effects, then `sigma`. The groups are `A`, `B` (crossed; crossed-mm with `school`, the
    /// multiple-membership term); `school` (the
    /// multiple-membership term) and `area` (multimember); `class:school` (lme4's name for
    /// the classes nested in schools) and `school` (nested3); `user` and `item` (ratings);
    /// `school` (survey: the population's values, with `gamma`, `alpha` and `delta`, the
    /// strengths of the selection of schools by their effect and of pupils by x and by ε).
    public var parameters: [(name: String, value: Double)] { process.parameters }

    /// The type that generates the design's data.
    var process: any SimulatedProcess.Type {
        switch self {
        case .crossed: return CrossedProcess.self
        case .crossedBinary: return CrossedBinaryProcess.self
        case .multimember: return MultipleMembershipProcess.self
        case .nested3: return NestedProcess.self
        case .crossedMultimember: return CrossedMultipleMembershipProcess.self
        case .ratings: return RatingsProcess.self
        case .survey: return SurveyProcess<SelectionByX>.self
        case .surveyInformative: return SurveyProcess<SelectionByResidual>.self
        }
    }
}

/// A grouping factor of a design: its name, its number of levels at full size, and the fewest it keeps.
struct SimulatedFactor {
    let name: String
    let full: Int
    let minimum: Int
}

/// One design's data-generating process: its description, its group-level effects and its rows.
protocol SimulatedProcess {
    static var formula: String { get }
    /// The columns, in file order.
    static var columns: [HDF5TableWriter.Column] { get }
    /// The grouping factors, in the order of `init(levels:random:)`'s `levels`.
    static var factors: [SimulatedFactor] { get }
    /// The true values, as `SimulationDesign.parameters` documents.
    static var parameters: [(name: String, value: Double)] { get }

    /// Draws the group-level effects for factors with `levels` levels (in `factors` order).
    init(levels: [Int], random: inout Xoshiro256)

    /// Draws the next `count` rows and appends them to `writer`.
    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws
}

/// `crossed`: a random intercept and slope for A, crossed with a random intercept for B.
///
/// Effects are drawn level by level: A's (two normals each, intercept first), then B's.
/// Each row draws A, B, x, w, ε in that order.
struct CrossedProcess: SimulatedProcess {
    static let formula = "y ~ x + w + (1 + x | A) + (1 | B)"
    static let columns: [HDF5TableWriter.Column] = [.numeric("y"), .numeric("x"), .numeric("w"),
                                                    .integer("A"), .integer("B")]
    static let factors = [SimulatedFactor(name: "A", full: 10_000, minimum: 2),
                          SimulatedFactor(name: "B", full: 2_000, minimum: 2)]
    fileprivate static let intercept = 1.0, slopeX = 0.5, slopeW = -0.3
    fileprivate static let sdIntercept = 0.8, sdSlope = 0.3, correlation = 0.3, sdB = 0.5, sigma = 1.0
    static let parameters: [(name: String, value: Double)] = [
        ("beta_(Intercept)", intercept), ("beta_x", slopeX), ("beta_w", slopeW),
        ("sd_A_(Intercept)", sdIntercept), ("sd_A_x", sdSlope), ("cor_A", correlation),
        ("sd_B_(Intercept)", sdB), ("sigma", sigma),
    ]

    /// A's correlated intercepts and slopes, and B's intercepts (crossed-mm draws the same first).
    fileprivate let interceptA: [Double]
    fileprivate let slopeA: [Double]
    fileprivate let effectB: [Double]

    init(levels: [Int], random: inout Xoshiro256) {
        let c = Self.self
        var interceptA: [Double] = [], slopeA: [Double] = []
        interceptA.reserveCapacity(levels[0])
        slopeA.reserveCapacity(levels[0])
        let residualScale = (1 - c.correlation * c.correlation).squareRoot()
        for _ in 0..<levels[0] {
            let z0 = random.nextNormal(), z1 = random.nextNormal()
            interceptA.append(c.sdIntercept * z0)
            slopeA.append(c.sdSlope * (c.correlation * z0 + residualScale * z1))
        }
        self.interceptA = interceptA
        self.slopeA = slopeA
        effectB = (0..<levels[1]).map { _ in c.sdB * random.nextNormal() }
    }

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](repeating: 0, count: count), x = y, w = y
        var codeA = [Int64](repeating: 0, count: count), codeB = codeA
        for i in 0..<count {
            let a = random.nextInt(below: interceptA.count), b = random.nextInt(below: effectB.count)
            let xi = random.nextNormal(), wi = random.nextNormal()
            y[i] = c.intercept + c.slopeX * xi + c.slopeW * wi + interceptA[a] + slopeA[a] * xi + effectB[b]
                + c.sigma * random.nextNormal()
            x[i] = xi
            w[i] = wi
            codeA[i] = Int64(a + 1)
            codeB[i] = Int64(b + 1)
        }
        try writer.append(numeric: ["y": y, "x": x, "w": w], integer: ["A": codeA, "B": codeB])
    }
}

/// `crossed-binary`: crossed random intercepts for A and B, a binary response by the logit link.
///
/// Effects are drawn A's then B's; each row draws A, B, x, w and a uniform, in that order.
struct CrossedBinaryProcess: SimulatedProcess {
    static let formula = "y ~ x + w + (1 | A) + (1 | B)"
    static let columns: [HDF5TableWriter.Column] = [.numeric("y"), .numeric("x"), .numeric("w"),
                                                    .integer("A"), .integer("B")]
    static let factors = [SimulatedFactor(name: "A", full: 10_000, minimum: 2),
                          SimulatedFactor(name: "B", full: 2_000, minimum: 2)]
    private static let intercept = -0.5, slopeX = 0.5, slopeW = -0.3, sdA = 0.8, sdB = 0.5
    static let parameters: [(name: String, value: Double)] = [
        ("beta_(Intercept)", intercept), ("beta_x", slopeX), ("beta_w", slopeW),
        ("sd_A_(Intercept)", sdA), ("sd_B_(Intercept)", sdB),
    ]
    private let effectA: [Double], effectB: [Double]

    init(levels: [Int], random: inout Xoshiro256) {
        effectA = (0..<levels[0]).map { _ in Self.sdA * random.nextNormal() }
        effectB = (0..<levels[1]).map { _ in Self.sdB * random.nextNormal() }
    }

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](repeating: 0, count: count), x = y, w = y
        var codeA = [Int64](repeating: 0, count: count), codeB = codeA
        for i in 0..<count {
            let a = random.nextInt(below: effectA.count), b = random.nextInt(below: effectB.count)
            let xi = random.nextNormal(), wi = random.nextNormal()
            let eta = c.intercept + c.slopeX * xi + c.slopeW * wi + effectA[a] + effectB[b]
            y[i] = random.nextDouble() < 1 / (1 + exp(-eta)) ? 1 : 0
            x[i] = xi
            w[i] = wi
            codeA[i] = Int64(a + 1)
            codeB[i] = Int64(b + 1)
        }
        try writer.append(numeric: ["y": y, "x": x, "w": w], integer: ["A": codeA, "B": codeB])
    }
}

/// `multimember`: a weighted multiple-membership school effect and an area effect.
///
/// Effects are drawn schools first, then areas. Each row draws: the region, the number of
/// schools (one uniform), the distinct schools of the region (redrawing repeats), one uniform
/// weight per school (normalised), the area of the region, x, ε.
struct MultipleMembershipProcess: SimulatedProcess {
    static let formula = "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | area)"
    static let columns: [HDF5TableWriter.Column] = [.numeric("y"), .numeric("x"),
                                                    .numeric("school1"), .numeric("school2"), .numeric("school3"),
                                                    .numeric("w1"), .numeric("w2"), .numeric("w3"), .integer("area")]
    /// At least 3 schools, so a pupil can attend 3 distinct ones.
    static let factors = [SimulatedFactor(name: "school", full: 20_000, minimum: 3),
                          SimulatedFactor(name: "area", full: 5_000, minimum: 2)]
    private static let intercept = 2.0, slopeX = 0.7, sdSchool = 0.6, sdArea = 0.4, sigma = 1.0
    static let parameters: [(name: String, value: Double)] = [
        ("beta_(Intercept)", intercept), ("beta_x", slopeX),
        ("sd_school_(Intercept)", sdSchool), ("sd_area_(Intercept)", sdArea), ("sigma", sigma),
    ]

    private let effectSchool: [Double]
    private let effectArea: [Double]

    init(levels: [Int], random: inout Xoshiro256) {
        let c = Self.self
        effectSchool = (0..<levels[0]).map { _ in c.sdSchool * random.nextNormal() }
        effectArea = (0..<levels[1]).map { _ in c.sdArea * random.nextNormal() }
    }

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](repeating: 0, count: count), x = y
        var school1 = [Double](repeating: .nan, count: count), school2 = school1, school3 = school1
        var w1 = [Double](repeating: 0, count: count), w2 = w1, w3 = w1
        var codeArea = [Int64](repeating: 0, count: count)
        let schools = effectSchool.count, areas = effectArea.count
        let regions = max(1, min(areas / 10, schools / 4))
        for i in 0..<count {
            // Region r holds schools firstSchool ..< firstSchool + regionSchools, likewise areas.
            let r = random.nextInt(below: regions)
            let firstSchool = r * schools / regions, regionSchools = (r + 1) * schools / regions - firstSchool
            let firstArea = r * areas / regions, regionAreas = (r + 1) * areas / regions - firstArea
            let u = random.nextDouble()
            let attended = u < 0.6 ? 1 : u < 0.9 ? 2 : 3
            let s1 = firstSchool + random.nextInt(below: regionSchools)
            var s2 = s1, s3 = s1
            if attended > 1 { while s2 == s1 { s2 = firstSchool + random.nextInt(below: regionSchools) } }
            if attended > 2 { while s3 == s1 || s3 == s2 { s3 = firstSchool + random.nextInt(below: regionSchools) } }
            // Uniforms in (0, 1], so no attended school weighs 0.
            var weight1 = 1 - random.nextDouble(), weight2 = 0.0, weight3 = 0.0
            if attended > 1 { weight2 = 1 - random.nextDouble() }
            if attended > 2 { weight3 = 1 - random.nextDouble() }
            let total = weight1 + weight2 + weight3
            weight1 /= total
            weight2 /= total
            weight3 /= total
            let area = firstArea + random.nextInt(below: regionAreas)
            let xi = random.nextNormal()
            var schoolEffect = weight1 * effectSchool[s1]
            school1[i] = Double(s1 + 1)
            w1[i] = weight1
            if attended > 1 {
                schoolEffect += weight2 * effectSchool[s2]
                school2[i] = Double(s2 + 1)
                w2[i] = weight2
            }
            if attended > 2 {
                schoolEffect += weight3 * effectSchool[s3]
                school3[i] = Double(s3 + 1)
                w3[i] = weight3
            }
            y[i] = c.intercept + c.slopeX * xi + schoolEffect + effectArea[area] + c.sigma * random.nextNormal()
            x[i] = xi
            codeArea[i] = Int64(area + 1)
        }
        try writer.append(numeric: ["y": y, "x": x, "school1": school1, "school2": school2, "school3": school3,
                                    "w1": w1, "w2": w2, "w3": w3],
                          integer: ["area": codeArea])
    }
}

/// `nested3`: pupils in classes in schools, class coded within its school.
///
/// Effects are drawn schools first, then classes (school by school, class by class).
/// Each row draws school, class, x, ε.
struct NestedProcess: SimulatedProcess {
    static let formula = "y ~ x + (1 | school/class)"
    static let columns: [HDF5TableWriter.Column] = [.numeric("y"), .numeric("x"), .integer("school"), .integer("class")]
    /// `class` is the number of classes in each school: always 8.
    static let factors = [SimulatedFactor(name: "school", full: 2_000, minimum: 2),
                          SimulatedFactor(name: "class", full: 8, minimum: 8)]
    private static let intercept = 0.5, slopeX = 0.4, sdSchool = 0.7, sdClass = 0.4, sigma = 1.0
    static let parameters: [(name: String, value: Double)] = [
        ("beta_(Intercept)", intercept), ("beta_x", slopeX),
        ("sd_class:school_(Intercept)", sdClass), ("sd_school_(Intercept)", sdSchool), ("sigma", sigma),
    ]

    private let effectSchool: [Double]
    /// Class c of school s (both 0-based) at `s * classesPerSchool + c`.
    private let effectClass: [Double]
    private let classesPerSchool: Int

    init(levels: [Int], random: inout Xoshiro256) {
        let c = Self.self
        classesPerSchool = levels[1]
        effectSchool = (0..<levels[0]).map { _ in c.sdSchool * random.nextNormal() }
        effectClass = (0..<(levels[0] * levels[1])).map { _ in c.sdClass * random.nextNormal() }
    }

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](repeating: 0, count: count), x = y
        var codeSchool = [Int64](repeating: 0, count: count), codeClass = codeSchool
        for i in 0..<count {
            let school = random.nextInt(below: effectSchool.count), inSchool = random.nextInt(below: classesPerSchool)
            let xi = random.nextNormal()
            y[i] = c.intercept + c.slopeX * xi + effectSchool[school] + effectClass[school * classesPerSchool + inSchool]
                + c.sigma * random.nextNormal()
            x[i] = xi
            codeSchool[i] = Int64(school + 1)
            codeClass[i] = Int64(inSchool + 1)
        }
        try writer.append(numeric: ["y": y, "x": x], integer: ["school": codeSchool, "class": codeClass])
    }
}

/// `crossed-mm`: `crossed` plus a weighted multiple-membership school term crossed with A and B.
///
/// Effects are drawn A's (two normals each, intercept first), then B's, then the schools'. Each
/// row draws A, B, the number of schools (one uniform), the schools (redrawing a repeat), one
/// uniform weight per school (normalised), x, w, ε, in that order.
struct CrossedMultipleMembershipProcess: SimulatedProcess {
    static let formula = "y ~ x + w + (1 + x | A) + (1 | B) + (1 | mm(s1, s2, weights = cbind(m1, m2)))"
    static let columns: [HDF5TableWriter.Column] = [.numeric("y"), .numeric("x"), .numeric("w"), .integer("A"), .integer("B"),
                                                    .numeric("s1"), .numeric("s2"), .numeric("m1"), .numeric("m2")]
    static let factors = [SimulatedFactor(name: "A", full: 10_000, minimum: 2),
                          SimulatedFactor(name: "B", full: 2_000, minimum: 2),
                          SimulatedFactor(name: "school", full: 20_000, minimum: 2)]
    // The crossed design's parameters (its effects are drawn by it), and the schools' SD.
    private static let intercept = CrossedProcess.intercept, slopeX = CrossedProcess.slopeX, slopeW = CrossedProcess.slopeW
    private static let sdIntercept = CrossedProcess.sdIntercept, sdSlope = CrossedProcess.sdSlope
    private static let correlation = CrossedProcess.correlation, sdB = CrossedProcess.sdB, sigma = CrossedProcess.sigma
    private static let sdSchool = 0.6
    static let parameters: [(name: String, value: Double)] = [
        ("beta_(Intercept)", intercept), ("beta_x", slopeX), ("beta_w", slopeW),
        ("sd_A_(Intercept)", sdIntercept), ("sd_A_x", sdSlope), ("cor_A", correlation),
        ("sd_B_(Intercept)", sdB), ("sd_school_(Intercept)", sdSchool), ("sigma", sigma),
    ]

    private let interceptA: [Double]
    private let slopeA: [Double]
    private let effectB: [Double]
    private let effectSchool: [Double]

    /// A's and B's effects drawn as the crossed design draws them (its parameters are the same),
    /// then the schools'.
    init(levels: [Int], random: inout Xoshiro256) {
        let crossed = CrossedProcess(levels: Array(levels[0..<2]), random: &random)
        interceptA = crossed.interceptA
        slopeA = crossed.slopeA
        effectB = crossed.effectB
        effectSchool = (0..<levels[2]).map { _ in Self.sdSchool * random.nextNormal() }
    }

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](repeating: 0, count: count), x = y, w = y, m1 = y, m2 = y
        var s1 = [Double](repeating: .nan, count: count), s2 = s1
        var codeA = [Int64](repeating: 0, count: count), codeB = codeA
        let schools = effectSchool.count
        for i in 0..<count {
            let a = random.nextInt(below: interceptA.count), b = random.nextInt(below: effectB.count)
            let two = random.nextDouble() >= 0.6
            let first = random.nextInt(below: schools)
            var second = first
            if two { while second == first { second = random.nextInt(below: schools) } }
            // Uniforms in (0, 1], so no attended school weighs 0.
            var weight1 = 1 - random.nextDouble(), weight2 = two ? 1 - random.nextDouble() : 0
            let total = weight1 + weight2
            weight1 /= total
            weight2 /= total
            let xi = random.nextNormal(), wi = random.nextNormal()
            var schoolEffect = weight1 * effectSchool[first]
            s1[i] = Double(first + 1)
            m1[i] = weight1
            if two {
                schoolEffect += weight2 * effectSchool[second]
                s2[i] = Double(second + 1)
                m2[i] = weight2
            }
            y[i] = c.intercept + c.slopeX * xi + c.slopeW * wi + interceptA[a] + slopeA[a] * xi + effectB[b] + schoolEffect
                + c.sigma * random.nextNormal()
            x[i] = xi
            w[i] = wi
            codeA[i] = Int64(a + 1)
            codeB[i] = Int64(b + 1)
        }
        try writer.append(numeric: ["y": y, "x": x, "w": w, "s1": s1, "s2": s2, "m1": m1, "m2": m2],
                          integer: ["A": codeA, "B": codeB])
    }
}

/// `ratings`: users crossed with items, MovieLens-shaped (see `SimulationDesign`).
///
/// Effects are drawn users first, then items. Each row draws the user, the item (one uniform,
/// squared), x, ε.
struct RatingsProcess: SimulatedProcess {
    static let formula = "y ~ x + (1 | user) + (1 | item)"
    static let columns: [HDF5TableWriter.Column] = [.numeric("y"), .numeric("x"), .integer("user"), .integer("item")]
    static let factors = [SimulatedFactor(name: "user", full: 200_000, minimum: 2),
                          SimulatedFactor(name: "item", full: 20_000, minimum: 2)]
    private static let intercept = 3.5, slopeX = 0.2, sdUser = 0.5, sdItem = 0.4, sigma = 0.9
    static let parameters: [(name: String, value: Double)] = [
        ("beta_(Intercept)", intercept), ("beta_x", slopeX),
        ("sd_user_(Intercept)", sdUser), ("sd_item_(Intercept)", sdItem), ("sigma", sigma),
    ]

    private let effectUser: [Double]
    private let effectItem: [Double]

    init(levels: [Int], random: inout Xoshiro256) {
        let c = Self.self
        effectUser = (0..<levels[0]).map { _ in c.sdUser * random.nextNormal() }
        effectItem = (0..<levels[1]).map { _ in c.sdItem * random.nextNormal() }
    }

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](repeating: 0, count: count), x = y
        var user = [Int64](repeating: 0, count: count), item = user
        let users = effectUser.count, items = effectItem.count
        for i in 0..<count {
            let u = random.nextInt(below: users)
            let v = random.nextDouble()
            let t = min(items - 1, Int(Double(items) * v * v))
            let xi = random.nextNormal()
            y[i] = c.intercept + c.slopeX * xi + effectUser[u] + effectItem[t] + c.sigma * random.nextNormal()
            x[i] = xi
            user[i] = Int64(u + 1)
            item[i] = Int64(t + 1)
        }
        try writer.append(numeric: ["y": y, "x": x], integer: ["user": user, "item": item])
    }
}

/// How `SurveyProcess` selects: schools by e^{γu}, pupils by e^{αx + δε}.
protocol SurveySelection {
    static var gamma: Double { get }
    static var alpha: Double { get }
    static var delta: Double { get }
}

/// `survey`: informative at the school level only (given x).
enum SelectionByX: SurveySelection {
    static let gamma = 1.0, alpha = 0.5, delta = 0.0
}

/// `survey-informative`: informative at both levels.
enum SelectionByResidual: SurveySelection {
    static let gamma = 1.0, alpha = 0.0, delta = 0.5
}

/// `survey` and `survey-informative`: a two-stage sample of pupils in schools (see `SimulationDesign`).
///
/// Population schools are visited in order, each drawn when it is reached: its size M, its
/// effect u, then whether it is sampled (one uniform against π_s = min(1, a M e^{γu})); a sampled
/// school's M pupils are drawn in order: x, ε, then whether the pupil is sampled (one uniform
/// against π_p = min(1, b e^{αx + δε}), b = 20/(M E[e^{αx + δε}])). a = 1/(4 E[M] E[e^{γu}]), so that about
/// a quarter of the schools are sampled. The weights are 1/π_s and 1/π_p: Horvitz–Thompson
/// weights of a Poisson sample at each stage. The cursor (school, pupil) carries over from one
/// chunk to the next, so the data depend only on the seed.
struct SurveyProcess<Selection: SurveySelection>: SimulatedProcess {
    static var formula: String { "y ~ x + (1 | school)" }
    static var columns: [HDF5TableWriter.Column] {
        [.numeric("y"), .numeric("x"), .numeric("w_pupil"), .numeric("w_school"), .integer("school"), .integer("stratum")]
    }
    /// Schools are drawn as the sample needs them: no factor has a size set in advance.
    static var factors: [SimulatedFactor] { [] }
    private static var intercept: Double { 1 }
    private static var slopeX: Double { 0.5 }
    private static var sdSchool: Double { 0.5 }
    private static var sigma: Double { 1 }
    private static var gamma: Double { Selection.gamma }
    private static var alpha: Double { Selection.alpha }
    private static var delta: Double { Selection.delta }
    private static var pupilsPerSchool: Double { 20 }
    private static var schoolsPerStratum: Int { 50 }
    static var parameters: [(name: String, value: Double)] {
        [("beta_(Intercept)", intercept), ("beta_x", slopeX), ("sd_school_(Intercept)", sdSchool), ("sigma", sigma),
         ("gamma", gamma), ("alpha", alpha), ("delta", delta)]
    }
    /// E[M] = 20 + exp(4 + 0.6²/2) (the floor taken off by a half); E[e^{γu}] and E[e^{αx + δε}], lognormal means.
    private static var meanSize: Double { 20 + exp(4 + 0.18) - 0.5 }
    private static var schoolScale: Double { 1 / (4 * meanSize * exp(gamma * gamma * sdSchool * sdSchool / 2)) }
    private static var pupilMean: Double { exp((alpha * alpha + delta * delta * sigma * sigma) / 2) }

    /// Where the sample stands: the next population school, and the school being sampled.
    private final class Cursor {
        var nextSchool = 0
        var school: (code: Int, effect: Double, size: Int, weight: Double, next: Int)?
    }
    private let cursor = Cursor()

    init(levels: [Int], random: inout Xoshiro256) {}

    func appendRows(_ count: Int, random: inout Xoshiro256, to writer: HDF5TableWriter) throws {
        let c = Self.self
        var y = [Double](), x = y, wPupil = y, wSchool = y
        var school = [Int64](), stratum = school
        while y.count < count {
            guard var s = cursor.school, s.next < s.size else {
                // The next population school: its size, its effect, whether it is sampled.
                let code = cursor.nextSchool
                cursor.nextSchool += 1
                let size = 20 + Int(exp(4 + 0.6 * random.nextNormal()))
                let effect = c.sdSchool * random.nextNormal()
                let probability = min(1, c.schoolScale * Double(size) * exp(c.gamma * effect))
                cursor.school = random.nextDouble() < probability ? (code, effect, size, 1 / probability, 0) : nil
                continue
            }
            let xi = random.nextNormal(), e = c.sigma * random.nextNormal()
            let probability = min(1, c.pupilsPerSchool / (Double(s.size) * c.pupilMean) * exp(c.alpha * xi + c.delta * e))
            s.next += 1
            cursor.school = s
            guard random.nextDouble() < probability else { continue }
            y.append(c.intercept + c.slopeX * xi + s.effect + e)
            x.append(xi)
            wPupil.append(1 / probability)
            wSchool.append(s.weight)
            school.append(Int64(s.code + 1))
            stratum.append(Int64(s.code / c.schoolsPerStratum + 1))
        }
        try writer.append(numeric: ["y": y, "x": x, "w_pupil": wPupil, "w_school": wSchool],
                          integer: ["school": school, "stratum": stratum])
    }
}
