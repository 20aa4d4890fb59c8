import Foundation

/// How to fit: criterion, reading and factorisation settings.
public struct FitOptions: Sendable {
    /// REML (the default, as in lme4) or maximum likelihood.
    public var reml: Bool
    /// Rows read per chunk; the fit does not depend on it.
    public var chunkRows: Int
    /// The ordering for the sparse Cholesky factor. `auto` (the default) costs CHOLMOD's natural,
    /// AMD and METIS orderings and the blocked path by the symbolic analysis and takes the
    /// cheapest that fits in memory (`FactorizationChoice`). `natural` eliminates the term with
    /// the most levels first, which keeps its block diagonal, and sends a dense remainder to
    /// `BlockedCholesky` (InstEval: 10 ms, most of it dpotrf, against 29 ms for CHOLMOD natural
    /// and 44 ms for its least-fill choice).
    public var ordering: FillReducingOrdering
    /// Threads that read and accumulate the cross-products; the fit does not depend on it.
    public var threads: Int
    /// A column of precision weights (lme4's `weights =`): row i's residual variance is σ²/w_i.
    public var weights: String?
    /// The optimiser of θ: Newton with the average-information matrix, or BOBYQA.
    public var optimizer: OptimizerChoice = .newton
    /// Denominator degrees of freedom for the fixed effects' t-tests (none, as lme4).
    public var ddf: DenominatorDF = .none
    /// A level-1 variance that is not constant (nil: constant, as lme4).
    public var residualVariance: ResidualVarianceModel?
    /// Direct (a Cholesky factor), iterative (conjugate gradients and stochastic traces), or auto:
    /// the iterative path when no factor fits in memory or it is predicted faster (`SolverChoice`).
    public var solver: SolverChoice = .auto
    /// The iterative path's probes, seed and tolerances.
    public var iterative = IterativeSettings()
    /// The most memory the factorisation may take (bytes), below what the machine has available
    /// (`MemAvailable`): a fit whose factor is predicted to need more stops before allocating it.
    public var maxMemory: Double?
    /// Called with the factorisation's candidates and choice, before the first evaluation (`--verbose`).
    public var log: (@Sendable (String) -> Void)?
    /// A factorisation already chosen (a refit of a fit's own cross-products): no analysis, no check.
    var factorization: Factorization?
    /// Called after every evaluation of the deviance by the optimiser (lme4's `verbose`):
    /// the evaluation's number, θ and the deviance.
    public var trace: (@Sendable (_ evaluation: Int, _ theta: [Double], _ deviance: Double) -> Void)?
    /// The job's ranks: each reads its slab of the rows; every rank gets the same fit.
    public var communicator: Communicator
    /// Rows per segment, the unit of the fixed summation order (ranks read groups of 16
    /// segments). Results depend on it through rounding only; tests make it small so that a
    /// small file spreads over several ranks.
    public var segmentRows = CrossProductAccumulator.segmentRows

    public init(reml: Bool = true, chunkRows: Int = 65_536, ordering: FillReducingOrdering = .auto,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                trace: (@Sendable (Int, [Double], Double) -> Void)? = nil,
                communicator: Communicator = SingleProcess()) {
        self.communicator = communicator
        self.reml = reml
        self.chunkRows = chunkRows
        self.ordering = ordering
        self.threads = threads
        self.trace = trace
    }
}

/// Fits linear mixed models: parse → cross-products → optimise → result (lme4's
/// `lFormula` → `mkLmerDevfun` → `optimizeLmer` → `mkMerMod`).
///
/// ```swift
/// let data = try openTable(path: "sleepstudy.csv", table: nil)
/// let fit = try LinearMixedModel.fit("Reaction ~ Days + (Days | Subject)", data: data)
/// print(fit.summary())
/// ```
public enum LinearMixedModel {
    /// Fits `formula` to `data`, reading the rows twice (levels, then cross-products) and never again.
    public static func fit(_ formula: String, data: TableSource, options: FitOptions = FitOptions()) throws -> FitResult {
        let clock = ContinuousClock()
        let t0 = clock.now
        var parsed = try Formula.parse(formula)
        try parsed.requireGaussian()
        if let w = options.weights { parsed = parsed.weighted(by: w) }
        if let model = options.residualVariance {
            if options.weights != nil { throw InputError("--residual-variance is not available with --weights") }
            if options.ddf != .none {
                throw InputError("--ddf is not available with --residual-variance: its tests would need Var(β̂)'s derivatives in the variance ratios too")
            }
            parsed = parsed.withResidualVariance(model)
        }
        let frame = try ModelFrame.scan(parsed, source: data, chunkRows: options.chunkRows, threads: options.threads,
                                        communicator: options.communicator, segmentRows: options.segmentRows)
        let t1 = clock.now
        var result: FitResult
        if parsed.residualVariance != nil {
            result = try HeteroscedasticModel.fit(frame, options: options)
            result.timings = [("levels", t1 - t0), ("cross-products and optimisation", clock.now - t1)]
        } else {
            let crossProducts = try frame.crossProducts(threads: options.threads)
            let t2 = clock.now
            result = try fit(crossProducts, options: options)
            let after = result.timings   // stages the fit timed itself (the degrees of freedom)
            let optimisation = clock.now - t2 - after.reduce(Duration.zero) { $0 + $1.duration }
            result.timings = [("levels", t1 - t0), ("cross-products", t2 - t1), ("optimisation", optimisation)] + after
        }
        result.formula = parsed.text
        result.weights = options.weights
        result.dataName = data.name
        result.droppedRows = frame.droppedRows
        result.factorLevels = frame.factorLevelNames
        if let tests = result.contrastTests {
            let design = frame.fixedDesign
            let kept = result.fixedNames.compactMap { name in design.columns.firstIndex { $0.name == name } }
            for (term, rows) in TypeThreeContrasts.contrasts(design, terms: parsed.fixed, kept: kept) {
                if let rows, let test = tests.termTest(term, rows: rows, beta: result.beta, sigma: result.sigma) {
                    result.fixedEffectTests?.terms.append(test)
                } else {
                    result.fixedEffectTests?.untestedTerms.append(term)
                }
            }
        }
        if result.monteCarlo != nil { result.rows = ModelRows(frame) }
        return result
    }

    /// Fits from cross-products alone: no data are touched.
    public static func fit(_ crossProducts: CrossProducts, options: FitOptions = FitOptions()) throws -> FitResult {
        try checkUsable(crossProducts)
        var notes: [String] = []
        let keep = independentColumns(crossProducts)
        var cp = crossProducts
        if keep.count < crossProducts.fixedCount {
            let dropped = crossProducts.fixedNames.indices.filter { !keep.contains($0) }.map { crossProducts.fixedNames[$0] }
            notes.append("fixed-effect model matrix is rank deficient so dropping \(dropped.count) column\(dropped.count == 1 ? "" : "s") / coefficient\(dropped.count == 1 ? "" : "s"): \(dropped.joined(separator: ", "))")
            cp = crossProducts.selectingFixed(keep)
        }
        try checkResidual(cp)
        if options.ddf == .kenwardRoger {
            guard options.reml else {
                throw InputError("--ddf kenward-roger needs a REML fit (pbkrtest's method is defined for REML): drop --ml, or use --ddf satterthwaite")
            }
            try KenwardRoger.requireSize(cp.randomEffectsCount,
                                         limit: MemoryLimit.forFit(maxMemory: options.maxMemory, communicator: options.communicator))
        }
        let pls: PenalizedLeastSquares
        if let chosen = options.factorization {
            pls = try PenalizedLeastSquares(cp, reml: options.reml, factorization: chosen)
        } else {
            let limit = MemoryLimit.forFit(maxMemory: options.maxMemory, communicator: options.communicator)
            switch try SolverChoice.resolve(options.solver, cp, options: options, limit: limit) {
            case .iterative:
                if options.ddf != .none {
                    throw InputError("--ddf \(options.ddf.rawValue) needs a Cholesky factor, and this fit takes the iterative solver: "
                        + "use --solver direct if the factor fits")
                }
                return try fitIteratively(cp, options: options, notes: notes)
            case .direct(let ranked):
                pls = try PenalizedLeastSquares(cp, reml: options.reml, ordering: options.ordering, memoryLimit: limit,
                                                needsInverse: options.optimizer == .newton || options.ddf == .satterthwaite,
                                                ranked: ranked, log: options.log)
            }
        }
        let factor = pls.factor
        var summary = OptimizerSummary()
        let theta: [Double]
        var derivatives: NewtonOptimizer.Derivatives?
        switch options.optimizer {
        case .newton:
            // BOBYQA starts where lme4 does, so that it stops where lme4 does; Newton from the moments.
            let start = StartingValues.moments(cp, factor: factor)
            theta = try NewtonOptimizer.minimize(pls, start: start, trace: options.trace, summary: &summary,
                                                 derivatives: &derivatives).theta
        case .bobyqa:
            var evaluations = 0
            let objective: ([Double]) -> Double = { theta in
                let value = pls.objective(theta)
                evaluations += 1
                options.trace?(evaluations, theta, value)
                return value
            }
            theta = try Optimizer.minimize(objective, start: factor.initialTheta, lower: factor.lowerBounds, summary: &summary).theta
        }
        checkConvergence(pls, theta: theta, derivatives: derivatives, summary: &summary)
        if let w = summary.warning { notes.append(w) }
        if theta.indices.contains(where: { factor.isDiagonal($0) && theta[$0] < 1e-4 }) {
            notes.append("boundary (singular) fit: a variance component is estimated at or near zero")
        }
        guard let e = pls.evaluate(theta) else {
            throw InputError("the model could not be evaluated at the optimum: the response may be constant or fitted exactly")
        }
        var result = FitResult(crossProducts: cp, pls: pls, theta: theta, evaluation: e, optimizer: summary, notes: notes)
        result.ordering = options.ordering
        result.factorization = pls.factorization
        result.optimizerChoice = options.optimizer
        let tests: (any ContrastTests)?
        let clock = ContinuousClock(), t0 = clock.now
        switch options.ddf {
        case .none: tests = nil
        case .satterthwaite: tests = try Satterthwaite.tests(pls, theta: theta)
        case .kenwardRoger:
            tests = try KenwardRoger.tests(cp, factor: factor, theta: theta, sigma: result.sigma, covariance: result.fixedCovariance)
        }
        if let tests {
            result.timings = [("degrees of freedom", clock.now - t0)]
            result.contrastTests = tests
            result.fixedEffectTests = FixedEffectTests(method: options.ddf, beta: result.beta, tests: tests)
        }
        return result
    }

    /// The fit on the iterative path (`IterativePenalizedLeastSquares`): Newton steps with the
    /// probes fixed; then, if the Monte-Carlo error of θ̂ exceeds a tenth of its standard error
    /// (√(2 (H⁻¹)_ii), H the AI matrix of the deviance), again from the point reached with the
    /// probes that bring it there (the variance falls as 1/N; a power-of-two multiple, at most
    /// `maxProbes`); then the criterion once more, on `finalProbeFactor` times the probes.
    static func fitIteratively(_ cp: CrossProducts, options: FitOptions, notes given: [String]) throws -> FitResult {
        var notes = given
        let settings = options.iterative
        let pls = IterativePenalizedLeastSquares(cp, reml: options.reml, settings: settings, threads: options.threads,
                                                 communicator: options.communicator)
        let factor = pls.factor
        var summary = OptimizerSummary()
        var theta = StartingValues.moments(cp, factor: factor)
        var thetaSE = theta.map { _ in 0.0 }, thetaStatisticalSE = thetaSE
        var rounds = 0
        while true {
            var round = OptimizerSummary()
            var derivatives: NewtonOptimizer.Derivatives?
            theta = try NewtonOptimizer.minimize(pls, start: theta, trace: options.trace, summary: &round,
                                                 derivatives: &derivatives).theta
            summary.algorithm = round.algorithm
            summary.fallback = round.fallback ?? summary.fallback
            summary.returnCode = round.returnCode
            summary.iterations += round.iterations
            summary.evaluations += round.evaluations
            summary.gradients += round.gradients
            rounds += 1
            guard let e = pls.evaluate(theta) else {
                throw InputError("the model could not be evaluated at the optimum: the response may be constant or fitted exactly")
            }
            let known = derivatives ?? pls.derivatives(theta, e)
            if derivatives == nil { summary.gradients += 1 }
            let free = theta.indices.filter { theta[$0] - 1e-4 > factor.lowerBounds[$0] }
            let scaled = NewtonOptimizer.newtonStep(known.information, known.gradient, free: free)
            summary.maxGradient = scaled.map(abs).max() ?? 0
            summary.converged = summary.maxGradient.isFinite && summary.maxGradient < 2e-3
            // Monte-Carlo covariance of θ̂: H⁻¹ Σ_g H⁻¹ on the free coordinates; statistical: 2H⁻¹.
            let (mcSE, statSE) = monteCarloErrors(information: known.information, gradientCovariance: pls.gradientCovariance(), free: free)
            thetaSE = theta.indices.map { i in free.firstIndex(of: i).map { mcSE[$0] } ?? 0 }
            thetaStatisticalSE = theta.indices.map { i in free.firstIndex(of: i).map { statSE[$0] } ?? 0 }
            // The probes that would bring every MC SE to a tenth of its SE (the variance falls as 1/N),
            // as a power-of-two multiple of those in use.
            let ratio = zip(mcSE, statSE).map { $1 > 0 ? $0 / (0.1 * $1) : 0 }.max() ?? 0
            if ratio <= 1 || pls.exact { break }
            var needed = pls.probes
            while Double(needed) < Double(pls.probes) * ratio * ratio && needed < settings.maxProbes { needed *= 2 }
            needed = min(needed, settings.maxProbes)
            if needed == pls.probes {
                notes.append("the Monte-Carlo error of θ̂ is above a tenth of its standard error with \(pls.probes) probes, "
                    + "the most allowed (--max-probes)")
                break
            }
            pls.probes = needed
        }
        if !summary.converged {
            summary.warning = String(format: "model failed to converge with max|grad| = %.6g (tol = 0.002)", summary.maxGradient)
            notes.append(summary.warning!)
        }
        if rounds > 1 { summary.algorithm += ", again on \(pls.probes) probes" }
        if theta.indices.contains(where: { factor.isDiagonal($0) && theta[$0] < 1e-4 }) {
            notes.append("boundary (singular) fit: a variance component is estimated at or near zero")
        }
        let fitProbes = pls.probes
        guard let e = pls.evaluate(theta),
              let criterion = pls.reestimateCriterion(theta, probes: fitProbes * max(1, settings.finalProbeFactor)) else {
            throw InputError("the model could not be evaluated at the optimum: the response may be constant or fitted exactly")
        }
        var result = FitResult(crossProducts: cp, reml: options.reml, factor: factor, theta: theta, beta: e.beta,
                               sigma: pls.residualSD(e), r: e.r, modes: pls.conditionalModes(theta, e), objective: criterion.deviance,
                               optimizer: summary, notes: notes)
        result.ordering = options.ordering
        result.optimizerChoice = .newton
        result.iterative = settings
        let t = pls.seconds
        options.log?(String(format: "iterative solver: %.2f s in evaluations and AI matrices: probes %.2f s, low eigenpairs %.2f s, "
            + "solves %.2f s, the rest %.2f s", t.total, t.probes, t.eigenpairs, t.solves, t.total - t.probes - t.eigenpairs - t.solves))
        result.monteCarlo = MonteCarloError(probes: fitProbes, criterionProbes: criterion.probes, criterionSE: criterion.standardError,
                                            thetaSE: thetaSE, thetaStatisticalSE: thetaStatisticalSE, iterationLog: pls.iterationLog)
        return result
    }

    /// The Monte-Carlo standard errors of θ̂'s free coordinates (from the gradient's covariance
    /// Σ_g: H⁻¹Σ_gH⁻¹) and their statistical standard errors (√(2(H⁻¹)_ii), the deviance being −2 log L).
    static func monteCarloErrors(information h: [Double], gradientCovariance sigma: [Double], free: [Int]) -> (mc: [Double], statistical: [Double]) {
        let n = Int(Double(h.count).squareRoot()), m = free.count
        guard m > 0 else { return ([], []) }
        var hf = [Double](repeating: 0, count: m * m), sf = hf
        for (b, j) in free.enumerated() { for (a, i) in free.enumerated() {
            hf[a + b * m] = h[i + j * n]
            sf[a + b * m] = sigma[i + j * n]
        } }
        guard let r = DenseCholesky.upper(hf, order: m) else {
            return (Array(repeating: .nan, count: m), Array(repeating: .nan, count: m))
        }
        let hInverse = DenseCholesky.inverseOfCrossProduct(r, leading: m, order: m)
        var mc: [Double] = [], statistical: [Double] = []
        for i in 0..<m {
            var v = 0.0
            for a in 0..<m { for b in 0..<m { v += hInverse[i + a * m] * sf[a + b * m] * hInverse[b + i * m] } }
            mc.append(max(0, v).squareRoot())
            statistical.append((2 * hInverse[i + i * m]).squareRoot())
        }
        return (mc, statistical)
    }

    /// Refuses what no fit can use: no random-effects term, or cross-products that overflowed.
    static func checkUsable(_ cp: CrossProducts) throws {
        if cp.terms.isEmpty {
            throw InputError("no random-effects terms specified in the formula (a term such as (1 | g)): mlm fits mixed models")
        }
        let p = cp.fixedCount
        for j in 0...p where !cp.xx(j, j).isFinite {
            let what = j == p ? "the response" : "fixed-effect column '\(cp.fixedNames[j])'"
            throw InputError("\(what) is too large for its sum of squares to be finite in double precision; rescale it")
        }
        if !cp.xyxy.allSatisfy(\.isFinite) || !cp.zxy.allSatisfy(\.isFinite) {
            throw InputError("the cross-products of the fixed effects or the response are not finite; rescale the variables")
        }
        var offset = 0
        for t in cp.terms {
            let columns = offset..<(offset + t.columns)
            offset += t.columns
            for c in columns {
                let range = cp.zzColumnStarts[c]..<cp.zzColumnStarts[c + 1]
                if !cp.zzValues[range].allSatisfy(\.isFinite) {
                    throw InputError("the random effects of (\(t.effects.joined(separator: " + ")) | \(t.group)) have cross-products too large to be finite in double precision; rescale them")
                }
            }
        }
    }

    /// Refuses a response that the fixed effects fit exactly (y = 2 x): its residual sum of squares
    /// is rounding, and a fit would report σ ≈ 0 and t values of 1e9.
    static func checkResidual(_ cp: CrossProducts) throws {
        let p1 = cp.fixedCount + 1, yy = cp.xx(p1 - 1, p1 - 1)
        let residual = DenseCholesky.upper(cp.xyxy, order: p1).map { $0[p1 * p1 - 1] * $0[p1 * p1 - 1] } ?? 0
        if residual <= exactFitTolerance * yy {
            throw InputError("the response is a linear combination of the fixed effects (their least-squares residuals are 0 to rounding): there is no residual variance to estimate")
        }
    }

    /// A residual sum of squares below this part of y'y is rounding (the Cholesky of [X y]'[X y]
    /// computes it with an error of a few ε y'y).
    static let exactFitTolerance = 1e-13

    /// lme4's tolerance for dropping aliased fixed-effect columns (`chkRank.drop.cols`, `qr(X, tol = 1e-7)`).
    static let rankTolerance = 1e-7

    /// The fixed-effect columns kept, as lme4 decides (`chkRank.drop.cols`: LINPACK's `dqrdc2`
    /// with tol = 1e-7). dqrdc2 takes the columns in order and moves one to the end, for good,
    /// when the norm of what is left of it after the kept columns falls below tol times its
    /// original norm. Here X is known only through X'X: the Cholesky of X'X over the kept columns
    /// gives that remaining squared norm as the pivot d_j (R_jj² of the QR, up to rounding), so
    /// column j is kept when d_j ≥ tol² x_j'x_j.
    static func independentColumns(_ cp: CrossProducts) -> [Int] {
        let p = cp.fixedCount
        var keep: [Int] = []
        var r: [[Double]] = []     // rows of the Cholesky factor of X'X restricted to kept columns
        for j in 0..<p {
            let xjj = cp.xx(j, j)
            var col = [Double](repeating: 0, count: keep.count)
            var d = xjj
            for (a, ka) in keep.enumerated() {
                var s = cp.xx(ka, j)
                for b in 0..<a { s -= r[b][a] * col[b] }
                col[a] = s / r[a][a]
                d -= col[a] * col[a]
            }
            if xjj > 0 && d >= rankTolerance * rankTolerance * xjj {
                let rjj = d.squareRoot()
                for a in 0..<keep.count { r[a].append(col[a]) }
                r.append(Array(repeating: 0, count: keep.count) + [rjj])
                keep.append(j)
            }
        }
        return keep
    }

    /// lme4's convergence check: at θ̂, the gradient scaled by the inverse Hessian must be below
    /// 0.002 in every coordinate not at a bound (within 1e-4 of it). lme4 takes both by finite
    /// differences of the deviance (1 + m(m+3)/2 evaluations); here the gradient is analytic and
    /// the Hessian is the average-information matrix: one evaluation and one gradient, or none
    /// when Newton's last iteration gives them.
    static func checkConvergence(_ pls: PenalizedLeastSquares, theta: [Double], derivatives: NewtonOptimizer.Derivatives? = nil,
                                 summary: inout OptimizerSummary) {
        let lower = pls.factor.lowerBounds
        let free = theta.indices.filter { theta[$0] - 1e-4 > lower[$0] }
        guard !free.isEmpty else { summary.converged = true; return }
        let known: NewtonOptimizer.Derivatives
        if let derivatives {
            known = derivatives
        } else if let e = pls.evaluate(theta) {
            known = pls.derivatives(theta, e)   // û and z_r once for both
        } else {
            summary.converged = false
            summary.warning = "model failed to converge: the deviance cannot be evaluated at the estimates"
            return
        }
        let scaled = NewtonOptimizer.newtonStep(known.information, known.gradient, free: free)
        summary.maxGradient = scaled.map(abs).max() ?? 0
        summary.converged = summary.maxGradient.isFinite && summary.maxGradient < 2e-3
        if !summary.converged {
            summary.warning = String(format: "model failed to converge with max|grad| = %.6g (tol = 0.002)", summary.maxGradient)
        }
    }
}
