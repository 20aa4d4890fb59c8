import Foundation

/// How a GLMM is fitted.
public struct GeneralizedFitOptions: Sendable {
    public var family: ResponseFamily
    public var link: LinkFunction?
    /// Quadrature nodes per level: 1 is the Laplace approximation; more is adaptive
    /// Gauss–Hermite quadrature (one scalar random-effects term only), at most 25 as lme4.
    public var nodes: Int
    public var threads: Int
    public var chunkRows: Int
    public var communicator: Communicator
    public var maxMemory: Double?
    /// The row count under which the standard errors come from the finite-difference Hessian of
    /// the deviance in (θ, β), as lme4's `glmer` (`check.conv.nobsmax`), with fewer than
    /// `hessianParameters` parameters (its `check.conv.nparmax`); above, from R_X.
    public var hessianRows = 10_000
    public var hessianParameters = 20
    public var log: (@Sendable (String) -> Void)?
    /// Called after each deviance evaluation: its number, the parameters (θ, then β in stage 2), the deviance.
    public var trace: (@Sendable (Int, [Double], Double) -> Void)?
    /// Rows per segment of the fixed summation order (tests make it small).
    public var segmentRows = CrossProductAccumulator.segmentRows

    public init(family: ResponseFamily, link: LinkFunction? = nil, nodes: Int = 1,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount, chunkRows: Int = 65_536,
                communicator: Communicator = SingleProcess(), maxMemory: Double? = nil, log: (@Sendable (String) -> Void)? = nil) {
        self.family = family
        self.link = link
        self.nodes = nodes
        self.threads = threads
        self.chunkRows = chunkRows
        self.communicator = communicator
        self.maxMemory = maxMemory
        self.log = log
    }
}

/// Generalized linear mixed models (binomial, Poisson) by the Laplace approximation or adaptive
/// Gauss–Hermite quadrature, as lme4's `glmer`: the rows are held in memory, or read again at every pass (`GeneralizedRows`),
/// PIRLS finds the conditional modes at each θ (`PenalizedIRLS`), and BOBYQA minimises the
/// deviance in two stages, as `glmer` does:
///
/// 1. over θ, with β found jointly with u by PIRLS (lme4's nAGQ = 0);
/// 2. over (θ, β), PIRLS finding u alone, from stage 1's optimum; β is searched in units of
///    its stage-1 standard error.
///
/// Standard errors: β's covariance is 2 H⁻¹ restricted to β, H the central-difference Hessian
/// of the stage-2 deviance (step 10⁻⁴, lme4's `deriv12`) for fewer than `hessianRows` rows and
/// `hessianParameters` parameters away from a boundary; otherwise (R_X'R_X)⁻¹ from the
/// penalised weighted least squares at the mode.
public enum GeneralizedLinearMixedModel {
    /// A model read into memory, ready for its deviance to be evaluated.
    struct Prepared {
        let frame: ModelFrame
        let rows: GeneralizedRows
        let irls: PenalizedIRLS
        let nodes: Int
        var notes: [String] = []

        /// lme4's nAGQ = 0 deviance at θ: the Laplace deviance with (u, β) at their joint mode.
        func jointDeviance(_ theta: [Double]) throws -> PenalizedIRLS.Mode { try irls.mode(theta, fixedBeta: nil) }

        /// The deviance at (θ, β) (Laplace, or quadrature with `nodes` > 1), and the mode of u there.
        func deviance(_ parameters: [Double]) throws -> (value: Double, mode: PenalizedIRLS.Mode) {
            let nTheta = irls.factor.initialTheta.count
            let m = try irls.mode(Array(parameters[..<nTheta]), fixedBeta: Array(parameters[nTheta...]))
            return (nodes > 1 ? try AdaptiveGaussHermite.deviance(m, irls: irls, nodes: nodes) : m.deviance, m)
        }
    }

    /// Reads the model's rows into memory, or through once when they are to be streamed (checking
    /// the formula, the family and the data).
    static func prepare(_ formulaText: String, data: TableSource, options: GeneralizedFitOptions) throws -> Prepared {
        let distribution = try ResponseDistribution(family: options.family, link: options.link)
        var formula = try Formula.parse(formulaText)
        if formula.failures != nil && options.family != .binomial {
            throw InputError("a cbind(successes, failures) response is binomial; --family \(options.family.rawValue) needs a count")
        }
        if options.family == .binomial { formula = formula.allowingTwoLevelResponse() }
        guard (1...25).contains(options.nodes) else {
            throw InputError("--nagq \(options.nodes): the number of quadrature nodes is from 1 (Laplace) to 25")
        }
        let frame = try ModelFrame.scan(formula, source: data, chunkRows: options.chunkRows, threads: options.threads,
                                        communicator: options.communicator, segmentRows: options.segmentRows)
        if options.nodes > 1 {
            let terms = frame.randomEffectsTerms
            guard terms.count == 1, terms[0].dimension == 1, !isMembership(frame.formula) else {
                throw InputError("--nagq \(options.nodes): adaptive Gauss–Hermite quadrature needs a single scalar random-effects term, such as (1 | g); use --nagq 1 (Laplace)")
            }
        }
        let limit = MemoryLimit.forFit(maxMemory: options.maxMemory, communicator: options.communicator)
        let rows = try GeneralizedRows(frame: frame, distribution: distribution, threads: options.threads, limit: limit)
        // The factor gets what the rows leave.
        let factorLimit = MemoryLimit(bytes: limit.bytes - rows.bytes, source: rows.streamed ? limit.source : "\(limit.source) less the model rows")
        let irls = try PenalizedIRLS(rows: rows, memoryLimit: factorLimit, log: options.log)
        var prepared = Prepared(frame: frame, rows: rows, irls: irls, nodes: options.nodes)
        if let dropped = irls.droppedColumns, !dropped.isEmpty {
            prepared.notes.append("fixed-effect model matrix is rank deficient so dropping \(dropped.count) column\(dropped.count == 1 ? "" : "s") / coefficient\(dropped.count == 1 ? "" : "s"): \(dropped.joined(separator: ", "))")
        }
        options.log?(rows.streamed ? "model rows: read again from the file at every pass (they would take more than half of "
                        + "\(FactorizationChoice.formatBytes(limit.bytes)), \(limit.source))"
                     : String(format: "model rows in memory: %.1f MB on this rank", rows.bytes / 1e6))
        return prepared
    }

    public static func fit(_ formulaText: String, data: TableSource, options: GeneralizedFitOptions) throws -> GeneralizedFitResult {
        try fitPrepared(formulaText, data: data, options: options).fit
    }

    /// The fit, and the model it was fitted to (for a bootstrap).
    static func fitPrepared(_ formulaText: String, data: TableSource,
                            options: GeneralizedFitOptions) throws -> (fit: GeneralizedFitResult, prepared: Prepared, mode: PenalizedIRLS.Mode) {
        let clock = ContinuousClock(), t0 = clock.now
        let prepared = try prepare(formulaText, data: data, options: options)
        let (frame, rows, irls) = (prepared.frame, prepared.rows, prepared.irls)
        var notes = prepared.notes
        let t1 = clock.now
        let factor = irls.factor
        let nTheta = factor.initialTheta.count
        let optimum = try optimize(prepared, from: factor.initialTheta, trace: options.trace)
        let (value, mode) = (optimum.value, optimum.mode)
        let rxCovariance = rxCovariance(irls, mode)

        // The Hessian in (θ, β), as lme4's deriv12, for small models away from a boundary.
        let p = mode.beta.count, nPar = nTheta + p
        let deviance = prepared.deviance
        let singular = (0..<nTheta).contains { factor.isDiagonal($0) && mode.theta[$0] < 1e-4 }
        var covariance = rxCovariance
        var covarianceSource = "R_X"
        var hessian: [Double]?
        if rows.count < options.hessianRows && nPar < options.hessianParameters && !singular {
            // Each point's PIRLS starts from the optimum's mode, so that the deviance is one
            // smooth function of (θ, β) here, whatever the order of the points.
            let h = try centralHessian({ irls.restore(mode); return try deviance($0).0 }, at: optimum.parameters, value: value, step: 1e-4)
            hessian = h
            irls.restore(mode)
            if let inverse = Dense.inverse(h, order: nPar) {
                var v = [Double](repeating: 0, count: p * p)
                for i in 0..<p { for j in 0..<p { v[i + j * p] = inverse[(nTheta + i) + (nTheta + j) * nPar] + inverse[(nTheta + j) + (nTheta + i) * nPar] } }
                if DenseCholesky.upper(v, order: p) != nil {
                    covariance = v
                    covarianceSource = "Hessian"
                } else {
                    notes.append("the covariance of the fixed effects from the finite-difference Hessian is not positive definite: falling back to the one from R_X")
                }
            } else {
                notes.append("the finite-difference Hessian is singular: the covariance of the fixed effects is the one from R_X")
            }
        }
        if singular { notes.append("boundary (singular) fit: a variance component is estimated at or near zero") }
        let t2 = clock.now

        let b = irls.randomEffects(mode.theta, mode.u)
        let inverseBlocks = irls.inverseDiagonalBlocks(at: mode)
        var result = GeneralizedFitResult(
            formula: formulaText, dataName: data.name, distribution: rows.distribution, nodes: options.nodes,
            nobs: rows.count, droppedRows: frame.droppedRows, terms: irls.crossProductsTerms, factor: factor,
            theta: mode.theta, fixedNames: irls.fixedNames, beta: mode.beta,
            covariance: covariance, covarianceSource: covarianceSource, rxCovariance: rxCovariance, hessian: hessian,
            deviance: value, laplaceParts: (mode.logDensity, mode.squaredLength, mode.logDetL2),
            devianceResiduals: mode.devianceResiduals, conditionalModes: b, inverseBlocks: inverseBlocks,
            stages: optimum.stages, pirlsIterations: irls.iterations, notes: notes,
            timings: [("levels and rows", t1 - t0), ("optimisation", t2 - t1)])
        result.factorLevels = frame.factorLevelNames
        return (result, prepared, mode)
    }

    /// The fit, then a parametric bootstrap of it, as lme4's `bootMer` of a glmer fit: each
    /// replicate draws u* ~ N(0, I) (b* = Λ(θ̂)u*) and a response for every row from the fitted
    /// family at η = Xβ̂ + Zb* (+ offset), then is refitted by both stages from θ̂ (streamed rows
    /// draw their responses again as they are read). Replicates run one after another, each on every thread and rank, so
    /// a replicate's estimates do not depend on either. A refit that fails (separation in a
    /// replicate) is left out of the intervals, as boot does with NA.
    public static func fitWithBootstrap(_ formulaText: String, data: TableSource, options: GeneralizedFitOptions,
                                        bootstrap: BootstrapOptions) throws -> (fit: GeneralizedFitResult, bootstrap: BootstrapResult) {
        let (fit, prepared, mode) = try fitPrepared(formulaText, data: data, options: options)
        let irls = prepared.irls, q = mode.u.count
        var replicates: [BootstrapReplicate] = []
        for r in 0..<bootstrap.replicates {
            var random = Xoshiro256(seed: bootstrap.seed, stream: r)
            let u = (0..<q).map { _ in random.nextNormal() }
            prepared.rows.simulateResponses(beta: mode.beta, b: irls.randomEffects(mode.theta, u), seed: bootstrap.seed, replicate: r)
            irls.restore(mode, responsesChanged: true)
            do {
                let refit = try optimize(prepared, from: fit.theta, trace: nil)
                replicates.append(BootstrapReplicate(index: r, theta: refit.mode.theta, beta: refit.mode.beta, sigma: 1, deviance: refit.value))
            } catch is InputError {
                replicates.append(BootstrapReplicate(index: r, theta: fit.theta.map { _ in .nan }, beta: fit.beta.map { _ in .nan },
                                                     sigma: .nan, deviance: .nan))
            }
            if bootstrap.communicator.isRoot { bootstrap.progress?(r + 1, bootstrap.replicates) }
        }
        return (fit, BootstrapResult(generalized: fit, replicates: replicates, options: bootstrap))
    }

    /// The minimum of the deviance over (θ, β), found as glmer does.
    struct Optimum {
        /// (θ, β) at the minimum, the deviance there, and the mode of u.
        let parameters: [Double]
        let value: Double
        let mode: PenalizedIRLS.Mode
        let stages: (OptimizerSummary, OptimizerSummary)
    }

    /// glmer's two stages from `theta0`: BOBYQA over θ with (u, β) by PIRLS (nAGQ = 0), then over
    /// (θ, β) with u by PIRLS, β in units of its stage-1 standard error (from R_X). Throws when a
    /// mode separates the outcome (`checkSeparation`) or no deviance could be evaluated.
    static func optimize(_ prepared: Prepared, from theta0: [Double],
                         trace: (@Sendable (Int, [Double], Double) -> Void)?) throws -> Optimum {
        let factor = prepared.irls.factor, nTheta = theta0.count
        // The search at the looser PIRLS precision, the optimum at the exact one.
        prepared.irls.precision = .search
        defer { prepared.irls.precision = .exact }
        var failure: Error?
        var evaluations = 0
        func traced(_ parameters: [Double], _ value: Double) -> Double {
            evaluations += 1
            trace?(evaluations, parameters, value)
            return value
        }
        var stage1 = OptimizerSummary()
        let first = try Optimizer.minimize({ theta in
            do { return traced(theta, try prepared.jointDeviance(theta).deviance) } catch { failure = failure ?? error; return .infinity }
        }, start: theta0, lower: factor.lowerBounds, summary: &stage1)
        if !first.value.isFinite, let failure { throw failure }
        let mode1 = try prepared.jointDeviance(first.theta)
        try checkSeparation(prepared, mode1)
        let p = mode1.beta.count
        let scale = rxStandardErrors(prepared.irls, mode1).map { $0.isFinite && $0 > 0 ? $0 : 1 }
        func native(_ x: [Double]) -> [Double] {
            Array(x[..<nTheta]) + (0..<p).map { mode1.beta[$0] + scale[$0] * x[nTheta + $0] }
        }
        // Stops when a step changes the deviance by less than 1e-12 of it (or 1e-8): at 10^6
        // rows the default 1e-8 took 83 evaluations, this 64, with β̂ within 1e-3 SE of the former.
        var stage2 = OptimizerSummary()
        stage2.xtolRel = 1e-6
        stage2.ftolAbs = max(stage2.ftolAbs, 1e-12 * abs(first.value))
        failure = nil
        let x0 = first.theta + [Double](repeating: 0, count: p)
        let steps = first.theta.map { 0.1 * max(abs($0), 0.1) } + [Double](repeating: 0.5, count: p)
        let second = try Optimizer.minimize({ x in
            do { let y = native(x); return traced(y, try prepared.deviance(y).value) } catch { failure = failure ?? error; return .infinity }
        }, start: x0, lower: factor.lowerBounds + [Double](repeating: -.infinity, count: p), initialStep: steps, summary: &stage2)
        if !second.value.isFinite, let failure { throw failure }
        let parameters = native(second.theta)
        prepared.irls.precision = .exact
        let (value, mode) = try prepared.deviance(parameters)
        try checkSeparation(prepared, mode)
        return Optimum(parameters: parameters, value: value, mode: mode, stages: (stage1, stage2))
    }

    /// Throws when fitted means sit numerically at the end of their range at a mode: complete
    /// separation (or, for counts, a level of all zeros), where a fixed effect diverges and the
    /// estimates and their SEs would be meaningless. Names the largest coefficient.
    static func checkSeparation(_ prepared: Prepared, _ mode: PenalizedIRLS.Mode) throws {
        let irls = prepared.irls
        let count = try prepared.rows.boundaryRows(beta: mode.beta, b: irls.randomEffects(mode.theta, mode.u))
        guard count > 0 else { return }
        let what = prepared.rows.distribution.family == .binomial ? "probabilities numerically 0 or 1" : "means numerically 0"
        var message = "complete separation: \(count) row\(count == 1 ? " has" : "s have") fitted \(what)"
        if let j = mode.beta.indices.max(by: { abs(mode.beta[$0]) < abs(mode.beta[$1]) }) {
            message += String(format: "; the fixed effect '%@' diverges (%.3g)", irls.fixedNames[j], mode.beta[j])
        }
        throw InputError(message + ": drop or merge the predictor (or the level) that separates the outcome")
    }

    private static func isMembership(_ formula: Formula) -> Bool {
        formula.random.contains { if case .multipleMembership = $0.grouping { return true } else { return false } }
    }

    /// (R_X'R_X)⁻¹ from the penalised weighted least squares at the mode (lme4's `vcov` without the Hessian).
    static func rxCovariance(_ irls: PenalizedIRLS, _ mode: PenalizedIRLS.Mode) -> [Double] {
        let p = mode.beta.count
        return DenseCholesky.inverseOfCrossProduct(mode.evaluation.r, leading: p + 1, order: p)
    }

    static func rxStandardErrors(_ irls: PenalizedIRLS, _ mode: PenalizedIRLS.Mode) -> [Double] {
        let v = rxCovariance(irls, mode), p = mode.beta.count
        return (0..<p).map { v[$0 + $0 * p].squareRoot() }
    }

    /// lme4's `deriv12` Hessian: central differences with step h, the diagonal from f(x ± h e_j)
    /// and f(x), each off-diagonal pair from the four points x ± h e_i ± h e_j. Column-major.
    static func centralHessian(_ f: ([Double]) throws -> Double, at x: [Double], value fx: Double, step h: Double) throws -> [Double] {
        let n = x.count
        var hessian = [Double](repeating: 0, count: n * n)
        func at(_ changes: [(Int, Double)]) throws -> Double {
            var y = x
            for (i, d) in changes { y[i] += d }
            return try f(y)
        }
        for j in 0..<n {
            let plus = try at([(j, h)]), minus = try at([(j, -h)])
            hessian[j + j * n] = (plus - 2 * fx + minus) / (h * h)
            for i in 0..<j {
                let value = (try at([(i, h), (j, h)]) - at([(i, h), (j, -h)]) - at([(i, -h), (j, h)]) + at([(i, -h), (j, -h)])) / (4 * h * h)
                hessian[i + j * n] = value
                hessian[j + i * n] = value
            }
        }
        return hessian
    }
}
