import Foundation

/// Parametric bootstrap in cross-product space (DESIGN §4): each replicate's response is
/// simulated from the fitted model as the cross-products it would give, and the model is refit
/// to those, starting from θ̂. No replicate reads the rows, so its cost does not depend on n.
///
/// A replicate is y* = Wγ* + ε* with W = [Z X], γ* = [σ̂Λ̂u*; β̂], u* ~ N(0, I_q),
/// ε* ~ N(0, σ̂²I_n). The refit needs only
///
///     W'y*  = Gγ* + W'ε*,      y*'y* = γ*'Gγ* + 2γ*'W'ε* + ε*'ε*,      G = W'W,
///
/// and (W'ε*, ε*'ε*) has the law of (σ̂V'a, σ̂²(‖a‖² + c)) for any r × (q+p) matrix V of
/// full row rank r = rank(W) with V'V = G, a ~ N(0, I_r) and an independent c ~ χ²(n − r):
/// write ε* = Uε₁ + ε₂ with U's r orthonormal columns spanning W's columns, W = UV. V comes
/// from `SemidefiniteCholesky`. Replicate i draws u*, a and c, in that order, from a generator
/// seeded by (seed, i) alone, so the table is the same for any number of ranks and threads.
/// A fit by the iterative solver has no factor of W'W: its replicates draw W'ε* and ε*'ε* from
/// the rows instead (`IterativeBootstrapSimulator`).
public enum ParametricBootstrap {
    /// Runs the bootstrap of `fit` on every rank and thread of `options`. Returns the replicates
    /// and intervals on rank 0 and nil on the other ranks.
    public static func run(_ fit: FitResult, options: BootstrapOptions) throws -> BootstrapResult? {
        guard options.replicates > 0 else { throw InputError("--bootstrap needs a positive number of replicates") }
        guard options.level > 0 && options.level < 1 else { throw InputError("the confidence level must be between 0 and 1") }
        let communicator = options.communicator
        let simulator: ReplicateSimulator
        if fit.residualVarianceParts != nil {
            simulator = HeteroscedasticBootstrapSimulator(fit, threads: options.threads)
        } else if fit.residualVariance != nil {
            throw InputError("--bootstrap with a residual-variance function of a covariate would re-read the rows for every "
                + "evaluation of every replicate; it is available for \"~ 1 | g\"")
        } else {
            simulator = try fit.monteCarlo == nil
                ? BootstrapSimulator(fit, threads: options.threads)
                : IterativeBootstrapSimulator(fit, threads: options.threads)
        }
        let seed = options.seed
        let results = try JobDistribution(communicator: communicator, threads: simulator.jobThreads).run(
            // "v2": a replicate's bytes end with its residual-variance parameters; older records are not read.
            count: options.replicates, kind: "bootstrap-v2-\(seed)", checkpoint: options.checkpoint, fit: fit,
            progress: options.progress,
            work: { i, thread in simulator.replicate(i, seed: seed, thread: thread).encoded() })
        try communicator.agree { try simulator.checkRows() }
        guard let results else { return nil }
        let replicates = (0..<options.replicates).map { BootstrapReplicate(decoding: results[$0], index: $0) }
        return BootstrapResult(fit: fit, replicates: replicates, options: options)
    }
}

/// How to bootstrap: replicates, seed, interval, and where to run.
public struct BootstrapOptions {
    /// boot.ci's interval types: percentile, basic, normal.
    public enum IntervalType: String, CaseIterable, Sendable { case perc, basic, norm }

    public var replicates: Int
    public var seed: UInt64
    public var level: Double
    public var type: IntervalType
    /// Threads per rank that refit replicates.
    public var threads: Int
    /// A file of finished replicates, so a killed run resumes (rank 0 writes it).
    public var checkpoint: String?
    public var communicator: Communicator
    /// Called on rank 0 with (replicates done, replicates in all) as they finish.
    public var progress: ((Int, Int) -> Void)?

    public init(replicates: Int, seed: UInt64, level: Double = 0.95, type: IntervalType = .perc,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount, checkpoint: String? = nil,
                communicator: Communicator = SingleProcess(), progress: ((Int, Int) -> Void)? = nil) {
        self.replicates = replicates
        self.seed = seed
        self.level = level
        self.type = type
        self.threads = threads
        self.checkpoint = checkpoint
        self.communicator = communicator
        self.progress = progress
    }
}

/// One refit: its θ*, β*, σ* and deviance (all NaN when the refit failed).
public struct BootstrapReplicate: Sendable, Equatable {
    public let index: Int
    public let theta: [Double]
    public let beta: [Double]
    public let sigma: Double
    public let deviance: Double
    /// The residual-variance parameters estimated (`--residual-variance`; empty without).
    public let varianceParameters: [Double]

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.doubles(theta); w.doubles(beta); w.double(sigma); w.double(deviance); w.doubles(varianceParameters)
        return w.bytes
    }

    init(index: Int, theta: [Double], beta: [Double], sigma: Double, deviance: Double, varianceParameters: [Double] = []) {
        self.index = index
        self.theta = theta
        self.beta = beta
        self.sigma = sigma
        self.deviance = deviance
        self.varianceParameters = varianceParameters
    }

    init(decoding bytes: [UInt8], index: Int) {
        var r = ByteReader(bytes)
        self.init(index: index, theta: r.doubles(), beta: r.doubles(), sigma: r.double(), deviance: r.double(),
                  varianceParameters: r.doubles())
    }

    public var failed: Bool { !deviance.isFinite }
}

/// The bootstrap's replicates (in index order) and its intervals.
public struct BootstrapResult: Sendable {
    public let seed: UInt64
    public let level: Double
    public let type: BootstrapOptions.IntervalType
    public let thetaNames: [String]
    public let fixedNames: [String]
    /// The residual-variance parameters' names (`--residual-variance`), after σ and β.
    public let varianceNames: [String]
    public let replicates: [BootstrapReplicate]
    /// Each parameter's interval (lme4's order: SDs and correlations, σ, β).
    public let intervals: [ParameterInterval]
    /// Each successful replicate's parameters, in the order of `intervals`.
    public let parameterValues: [[Double]]
    /// Replicates whose refit failed (left out of the intervals, as boot does with NA).
    public var failed: Int { replicates.filter(\.failed).count }

    init(fit: FitResult, replicates: [BootstrapReplicate], options: BootstrapOptions) {
        seed = options.seed
        level = options.level
        type = options.type
        thetaNames = fit.thetaNames
        fixedNames = fit.fixedNames
        varianceNames = (fit.residualVariance.map(ModelParameter.residualVarianceParameters) ?? []).map(\.label)
        self.replicates = replicates
        let parameters = ModelParameter.all(of: fit)
        let factor = RelativeCovarianceFactor(terms: fit.terms)
        let values = replicates.filter { !$0.failed }.map { r in
            ModelParameter.values(FitResult.varCorr(terms: fit.terms, factor: factor, theta: r.theta, sigma: r.sigma),
                                  r.sigma, r.beta) + r.varianceParameters
        }
        parameterValues = values
        intervals = parameters.enumerated().map { j, parameter in
            let t = values.map { $0[j] }.filter(\.isFinite)
            let (lower, upper) = BootstrapInterval.limits(t, estimate: parameter.estimate, level: options.level, type: options.type)
            return ParameterInterval(parameter: parameter, lower: lower, upper: upper)
        }
    }
}

extension BootstrapResult {
    /// A GLMM's bootstrap: the intervals of its SDs, correlations and β (no σ); σ is 1 in the replicates.
    init(generalized fit: GeneralizedFitResult, replicates: [BootstrapReplicate], options: BootstrapOptions) {
        seed = options.seed
        level = options.level
        type = options.type
        thetaNames = fit.thetaNames
        fixedNames = fit.fixedNames
        varianceNames = []
        self.replicates = replicates
        let factor = RelativeCovarianceFactor(terms: fit.terms)
        let parameters = ModelParameter.parameters(terms: fit.terms, fixedNames: fit.fixedNames,
                                                   values: ModelParameter.values(fit.varcorr, nil, fit.beta), sigma: false)
        let values = replicates.filter { !$0.failed }.map { r in
            ModelParameter.values(FitResult.varCorr(terms: fit.terms, factor: factor, theta: r.theta, sigma: 1), nil, r.beta)
        }
        parameterValues = values
        intervals = parameters.enumerated().map { j, parameter in
            let t = values.map { $0[j] }.filter(\.isFinite)
            let (lower, upper) = BootstrapInterval.limits(t, estimate: parameter.estimate, level: options.level, type: options.type)
            return ParameterInterval(parameter: parameter, lower: lower, upper: upper)
        }
    }
}

/// boot.ci's intervals from replicates t of a statistic with estimate t₀.
enum BootstrapInterval {
    static func limits(_ t: [Double], estimate t0: Double, level: Double,
                       type: BootstrapOptions.IntervalType) -> (Double, Double) {
        guard t.count > 1 else { return (.nan, .nan) }
        let alpha = (1 - level) / 2
        switch type {
        case .perc:
            let sorted = t.sorted()
            return (orderStatistic(sorted, alpha), orderStatistic(sorted, 1 - alpha))
        case .basic:
            let sorted = t.sorted()
            return (2 * t0 - orderStatistic(sorted, 1 - alpha), 2 * t0 - orderStatistic(sorted, alpha))
        case .norm:
            let n = Double(t.count)
            let mean = t.reduce(0, +) / n
            let sd = (t.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
            let z = NormalDistribution.quantile(1 - alpha)
            let centre = t0 - (mean - t0)
            return (centre - z * sd, centre + z * sd)
        }
    }

    /// boot's `norm.inter`: the (R+1)α-th order statistic, interpolated on the normal quantile
    /// scale between neighbours when (R+1)α is not a whole number; the extremes beyond.
    static func orderStatistic(_ sorted: [Double], _ alpha: Double) -> Double {
        let r = sorted.count
        let rank = Double(r + 1) * alpha
        let k = Int(rank.rounded(.down))
        if abs(rank - rank.rounded()) < 1e-9 * max(1, rank), Int(rank.rounded()) >= 1, Int(rank.rounded()) <= r {
            return sorted[Int(rank.rounded()) - 1]
        }
        if k < 1 { return sorted[0] }
        if k >= r { return sorted[r - 1] }
        let q = NormalDistribution.quantile
        let a = q(alpha), lo = q(Double(k) / Double(r + 1)), hi = q(Double(k + 1) / Double(r + 1))
        return sorted[k - 1] + (a - lo) / (hi - lo) * (sorted[k] - sorted[k - 1])
    }
}

/// What the bootstrap asks of a simulator: replicate i's refit, on one of `jobThreads` workspaces.
protocol ReplicateSimulator: Sendable {
    /// Replicates run at once on each rank (each on its own workspace).
    var jobThreads: Int { get }
    func replicate(_ index: Int, seed: UInt64, thread: Int) -> BootstrapReplicate
    /// Throws what kept a replicate from being simulated (the rows could not be read again).
    func checkRows() throws
}

extension ReplicateSimulator {
    func checkRows() throws {}
}

/// The replicate's fixed draw: γ* = [σ̂Λ̂u*; β̂], u* the first q normals of the generator of
/// (seed, index), returned with the generator for the rest of the replicate's numbers.
func replicateEffects(_ fit: FitResult, lambda: RelativeCovarianceFactor, templates: [[Double]], seed: UInt64,
                      index: Int) -> (gamma: [Double], random: Xoshiro256) {
    var random = Xoshiro256(seed: seed, stream: index)
    var b = (0..<fit.crossProducts.randomEffectsCount).map { _ in random.nextNormal() }
    lambda.apply(templates, to: &b)
    return (b.map { $0 * fit.sigma } + fit.beta, random)
}

/// Simulates replicates' cross-products and refits them; one PLS workspace per thread.
final class BootstrapSimulator: ReplicateSimulator, @unchecked Sendable {
    let fit: FitResult
    let root: SemidefiniteCholesky
    private let workers: [PenalizedLeastSquares]
    /// Λ̂: the factor and its templates at θ̂, built once for every replicate.
    private let lambda: RelativeCovarianceFactor
    private let lambdaTemplates: [[Double]]
    var jobThreads: Int { workers.count }

    init(_ fit: FitResult, threads: Int) {
        self.fit = fit
        root = SemidefiniteCholesky(fit.crossProducts)
        workers = (0..<max(1, threads)).map { _ in
            // The fit's own cross-products and ordering: it factored them once already.
            try! PenalizedLeastSquares(fit.crossProducts, reml: fit.reml, factorization: fit.factorization)
        }
        lambda = RelativeCovarianceFactor(terms: fit.terms)
        lambdaTemplates = lambda.templates(fit.theta)
    }

    /// Replicate `index`'s cross-products: only [Z'y*; X'y*; y*'y*] differ from the data's.
    func crossProducts(replicate index: Int, seed: UInt64) -> CrossProducts {
        let cp = fit.crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, sigma = fit.sigma
        var (gamma, random) = replicateEffects(fit, lambda: lambda, templates: lambdaTemplates, seed: seed, index: index)
        let a = (0..<(q + p)).map { _ in random.nextNormal() }
        let c = random.nextChiSquare(df: cp.rows - root.rank)
        var aa = 0.0
        for j in 0..<(q + p) where root.pivots[j] > 0 { aa += a[j] * a[j] }
        return cp.replicate(gamma: gamma, noise: root.transposedRootTimes(a).map { $0 * sigma },
                            noiseSquares: sigma * sigma * (aa + c))
    }

    /// Refits to `cp` from θ̂ on `thread`'s workspace.
    func refit(_ cp: CrossProducts, index: Int, thread: Int) -> BootstrapReplicate {
        let pls = workers[thread]
        pls.replaceCrossProducts(with: cp)
        var summary = OptimizerSummary()
        guard let (theta, _) = try? fit.optimizerChoice.refit(pls, from: fit.theta, summary: &summary),
              let e = pls.evaluate(theta) else { return .failed(index, fit) }
        return BootstrapReplicate(index: index, theta: theta, beta: pls.fixedEffects(e), sigma: pls.residualSD(e),
                                  deviance: e.deviance)
    }

    func replicate(_ index: Int, seed: UInt64, thread: Int) -> BootstrapReplicate {
        refit(crossProducts(replicate: index, seed: seed), index: index, thread: thread)
    }
}

extension BootstrapReplicate {
    /// A refit that failed: every value NaN.
    static func failed(_ index: Int, _ fit: FitResult) -> BootstrapReplicate {
        BootstrapReplicate(index: index, theta: fit.theta.map { _ in .nan }, beta: fit.beta.map { _ in .nan },
                           sigma: .nan, deviance: .nan,
                           varianceParameters: (0..<(fit.residualVariance?.estimatedCount ?? 0)).map { _ in .nan })
    }
}

extension CrossProducts {
    /// Gγ with G = [Z X]'[Z X], for γ of length q + p.
    func gramTimes(_ gamma: [Double]) -> [Double] {
        let q = randomEffectsCount, p = fixedCount
        var out = [Double](repeating: 0, count: q + p)
        for c in 0..<q {
            for k in zzColumnStarts[c]..<zzColumnStarts[c + 1] {
                let r = Int(zzRowIndices[k]), v = zzValues[k]
                out[r] += v * gamma[c]
                if r != c { out[c] += v * gamma[r] }
            }
        }
        for j in 0..<p {
            let bj = gamma[q + j]
            for i in 0..<q {
                let zx = zxy[i + j * q]
                out[i] += zx * bj
                out[q + j] += zx * gamma[i]
            }
            for i in 0..<p { out[q + i] += xx(i, j) * bj }
        }
        return out
    }

    /// A replicate's cross-products, y* = Wγ* + ε*, from W'ε* (`noise`) and ε*'ε* (`noiseSquares`):
    /// W'y* = Gγ* + W'ε* and y*'y* = ε*'ε* + γ*'(Gγ* + 2W'ε*).
    func replicate(gamma: [Double], noise: [Double], noiseSquares: Double) -> CrossProducts {
        let g = gramTimes(gamma)
        let wy = zip(g, noise).map { $0 + $1 }
        var yy = noiseSquares
        for j in gamma.indices { yy += gamma[j] * (g[j] + 2 * noise[j]) }
        return replacingResponse(wy, yy)
    }

    /// The same rows with another response, given [Z'y; X'y] (length q + p) and y'y.
    func replacingResponse(_ wy: [Double], _ yy: Double) -> CrossProducts {
        let q = randomEffectsCount, p = fixedCount, p1 = p + 1
        var zxy = self.zxy, xyxy = self.xyxy
        for i in 0..<q { zxy[i + p * q] = wy[i] }
        for j in 0..<p { xyxy[j + p * p1] = wy[q + j]; xyxy[p + j * p1] = wy[q + j] }
        xyxy[p + p * p1] = yy
        return CrossProducts(rows: rows, terms: terms, fixedNames: fixedNames, blockStart: blockStart, blockTerm: blockTerm,
                             blockRowStarts: blockRowStarts, blockRows: blockRows, zzColumnStarts: zzColumnStarts,
                             zzRowIndices: zzRowIndices, zzValues: zzValues, zxy: zxy, xyxy: xyxy, logWeights: logWeights)
    }
}
