import Foundation

/// Profile-likelihood intervals (DESIGN §5), as lme4's `profile()` and `confint()` make them.
///
/// For each parameter φ — each random-effect SD and correlation, σ, each β_j — the signed root
/// ζ(φ) = sign(φ − φ̂)·√(d(φ) − d(φ̂)) is traced outward from φ̂ in both directions, the other
/// parameters re-optimised at each point by the fit's optimiser, starting from the optima of the
/// points before, extrapolated; the limits are where ζ = ∓z_{(1+level)/2}. Like lme4, d is the
/// ML deviance whatever the fit's criterion (a REML fit is profiled about its ML refit):
///
/// - SDs, correlations and σ: d(ω) = log|L_θ|² + r²(θ)/σ² + n log(2πσ²), with ω = (the SDs and
///   correlations of each term, in θ's order; σ) and θ = a Cholesky factor of Σ_k/σ², so
///   β is profiled out and σ is explicit; the other components of ω move within their bounds
///   (SD ≥ 0, −1 ≤ correlation ≤ 1) (`ProfileDeviance`).
/// - β_j: x_jβ_j moves into the response — the cross-products change without the rows — and
///   the ML deviance is minimised over θ with the other β and σ profiled out.
///
/// - With a residual SD per group (`--residual-variance "~ 1 | g"`), every point also minimises
///   over ρ = log δ (BOBYQA around the point's own optimiser, on Σ_g δ_g⁻² (group g's
///   cross-products)), and each δ_g is profiled with the other ρ and θ refitted.
///
/// Each (parameter, direction) is one job for `JobDistribution`. Where ζ is found by a trace
/// point, the limit is then refined on the profile itself (inverse interpolation of the trace's
/// last points), not read off an interpolating spline; where a bound (an SD of 0, a correlation
/// of ±1) comes before ζ = ∓z, the limit is the bound, as lme4 reports it.
public enum ProfileLikelihood {
    public static func run(_ fit: FitResult, options: ProfileOptions) throws -> ProfileResult? {
        guard options.level > 0 && options.level < 1 else { throw InputError("the confidence level must be between 0 and 1") }
        if fit.residualVarianceParts != nil {
            return try run(fit, engine: ProfileEngine(heteroscedastic: fit, threads: options.threads), jobThreads: options.threads,
                           options: options)
        }
        if fit.residualVariance != nil {
            throw InputError("--profile with a residual-variance function of a covariate would re-read the rows for every "
                + "evaluation; it is available for \"~ 1 | g\"")
        }
        if fit.monteCarlo != nil {
            // One trace at a time per rank, its solves on every thread (as the iterative bootstrap).
            return try run(fit, engine: ProfileEngine(iterative: fit, threads: options.threads), jobThreads: 1, options: options)
        }
        return try run(fit, engine: ProfileEngine(direct: fit, threads: options.threads), jobThreads: options.threads, options: options)
    }

    private static func run<Solver>(_ fit: FitResult, engine: ProfileEngine<Solver>, jobThreads: Int,
                                    options: ProfileOptions) throws -> ProfileResult? {
        let communicator = options.communicator
        let jobs = 2 * engine.parameters.count
        let z = NormalDistribution.quantile((1 + options.level) / 2)
        // "v2": a trace's bytes end with its effort; traces checkpointed before that are not read.
        guard let results = try JobDistribution(communicator: communicator, threads: jobThreads, batch: 1).run(
            count: jobs, kind: "profile-v2-\(options.level)", checkpoint: options.checkpoint, fit: fit, progress: options.progress,
            work: { job, thread in engine.trace(job / 2, direction: job % 2 == 0 ? -1 : 1, z: z, thread: thread).encoded() })
        else { return nil }
        let traces = (0..<jobs).map { ProfileTrace(decoding: results[$0]) }
        let parameters = ModelParameter.all(of: fit)
        return ProfileResult(
            level: options.level,
            intervals: parameters.indices.map {
                ParameterInterval(parameter: parameters[$0], lower: traces[2 * $0].limit, upper: traces[2 * $0 + 1].limit)
            },
            traces: parameters.indices.map { m in
                let down = traces[2 * m].points.reversed(), up = traces[2 * m + 1].points.dropFirst()
                return (parameters[m], Array(down) + Array(up))
            },
            effort: parameters.indices.map { traces[2 * $0].effort + traces[2 * $0 + 1].effort })
    }
}

public struct ProfileOptions {
    public var level: Double
    public var threads: Int
    public var checkpoint: String?
    public var communicator: Communicator
    /// Called on rank 0 with (traces done, traces in all).
    public var progress: ((Int, Int) -> Void)?

    public init(level: Double = 0.95, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                checkpoint: String? = nil, communicator: Communicator = SingleProcess(),
                progress: ((Int, Int) -> Void)? = nil) {
        self.level = level
        self.threads = threads
        self.checkpoint = checkpoint
        self.communicator = communicator
        self.progress = progress
    }
}

/// Profile intervals and, per parameter, its ζ trace: (value, ζ) in increasing value.
public struct ProfileResult: Sendable {
    public let level: Double
    public let intervals: [ParameterInterval]
    public let traces: [(parameter: ModelParameter, points: [(value: Double, zeta: Double)])]
    /// What each parameter's profile (both directions) cost, in `intervals`' order.
    public let effort: [ProfileEffort]

    /// What the whole profile cost.
    public var totalEffort: ProfileEffort { effort.reduce(ProfileEffort(), +) }

    /// The traces as CSV: one line per point.
    public func tracesCSV() -> String {
        var out = "parameter,group,var1,var2,name,value,zeta\n"
        let field = { (s: String?) in s.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" } ?? "" }
        for (p, points) in traces {
            for pt in points {
                out += "\(p.kind.rawValue),\(field(p.group)),\(field(p.var1)),\(field(p.var2)),\(field(p.name)),\(pt.value),\(pt.zeta)\n"
            }
        }
        return out
    }
}

/// What profile points cost: the points optimised (trace points and the limits' refinements),
/// the deviance evaluations and gradients they took (the first gradient of a point with its AI
/// matrix, the others updating it by secants), and how many of them BOBYQA finished after Newton
/// gave up.
public struct ProfileEffort: Sendable, Equatable {
    public var points = 0
    public var evaluations = 0
    public var gradients = 0
    public var fallbacks = 0

    public init() {}

    /// Counts one point optimised, as its optimiser reported it.
    mutating func add(_ summary: OptimizerSummary) {
        points += 1
        evaluations += summary.evaluations
        gradients += summary.gradients
        if summary.fallback != nil { fallbacks += 1 }
    }

    public static func + (a: ProfileEffort, b: ProfileEffort) -> ProfileEffort {
        var sum = a
        sum.points += b.points
        sum.evaluations += b.evaluations
        sum.gradients += b.gradients
        sum.fallbacks += b.fallbacks
        return sum
    }
}

/// One direction of one parameter's profile: the points from φ̂ outward, the limit, and its effort.
struct ProfileTrace {
    var points: [(value: Double, zeta: Double)]
    var limit: Double
    var effort: ProfileEffort

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.doubles(points.map(\.value)); w.doubles(points.map(\.zeta)); w.double(limit)
        w.ints([effort.points, effort.evaluations, effort.gradients, effort.fallbacks])
        return w.bytes
    }

    init(points: [(value: Double, zeta: Double)], limit: Double, effort: ProfileEffort) {
        self.points = points
        self.limit = limit
        self.effort = effort
    }

    init(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        let values = r.doubles(), zetas = r.doubles(), limit = r.double(), counts = r.ints()
        var effort = ProfileEffort()
        (effort.points, effort.evaluations, effort.gradients, effort.fallbacks) = (counts[0], counts[1], counts[2], counts[3])
        self.init(points: Array(zip(values, zetas)).map { (value: $0.0, zeta: $0.1) }, limit: limit, effort: effort)
    }
}

/// The ML refit, the deviances with parameters held fixed, and the tracing, on either path's
/// PLS problem (`ProfileSolver`).
final class ProfileEngine<Solver: ProfileSolver>: @unchecked Sendable {
    let cp: CrossProducts
    let terms: [RandomEffectsTerm]
    let parameters: [ModelParameter]
    /// The ML optimum: ω̂ (SDs, correlations, σ), β̂, their deviance, and β̂'s standard errors.
    let omega: [Double]
    let theta: [Double]
    let beta: [Double]
    let standardErrors: [Double]
    let minimum: Double
    /// Which components of ω are correlations (bounded by ±1); the others are SDs and σ (≥ 0).
    let isCorrelation: [Bool]
    /// For each correlation in ω, the components of the SDs it joins (`ProfileCoordinates.correlatedSDs`).
    private let correlatedSDs: [(Int, Int)?]
    /// One ML problem on the fit's cross-products per thread.
    private let workers: [Solver]
    /// An ML problem on other cross-products of the same Z'Z (β_j moved into the response).
    private let solver: (CrossProducts) throws -> Solver
    private let optimizer: OptimizerChoice
    /// A varIdent fit's groups' cross-products and the ML fit's ρ̂ = log δ̂ (all but the first
    /// group): every profile point then minimises over ρ too, and the ratios are profiled.
    var variance: (parts: [CrossProducts], rho: [Double])?
    private let factorization: Factorization

    /// `ml` is the ML fit (the fit itself, or its ML refit) and its deviance on the workers' problem.
    init(_ fit: FitResult, ml: FitResult, minimum: Double, workers: [Solver], solver: @escaping (CrossProducts) throws -> Solver) {
        cp = ml.crossProducts
        terms = fit.terms
        optimizer = fit.optimizerChoice
        factorization = fit.factorization
        parameters = ModelParameter.all(of: fit)
        let values = ModelParameter.values(ml.varcorr, ml.sigma, ml.beta)
        omega = Array(values[..<(values.count - ml.beta.count)])
        theta = ml.theta
        beta = ml.beta
        standardErrors = ml.standardErrors
        self.minimum = minimum
        isCorrelation = parameters.prefix(omega.count).map { $0.kind == .cor }
        correlatedSDs = ProfileCoordinates.correlatedSDs(terms)
        self.workers = workers
        self.solver = solver
    }

    private func zeta(_ value: Double, _ centre: Double, _ deviance: Double) -> Double {
        let d = max(0, deviance - minimum).squareRoot()
        return value < centre ? -d : d
    }

    // MARK: SDs, correlations, σ

    /// The least deviance with ω_m = value, the other components moving from `start` by the fit's
    /// optimiser (`ProfileDeviance`); and where it is. The correlations of an SD held at 0 do not
    /// change the deviance, so they are held too. `summary` gets the optimiser's counts.
    func profileVariance(_ m: Int, value: Double, start: [Double], thread: Int, summary: inout OptimizerSummary) -> (Double, [Double]) {
        var held = start
        held[m] = value
        let free = omega.indices.filter { c in c != m && !(value == 0 && correlatedSDs[c].map { $0.0 == m || $0.1 == m } == true) }
        let sigma = omega[omega.count - 1]
        let objective = ProfileDeviance<Solver>(workers[thread], omega: held, free: free, scale: free.map { isCorrelation[$0] ? 1 : sigma })
        let x0 = free.indices.map { a in
            min(max(start[free[a]] / objective.scale[a], objective.lowerBounds[a]), objective.upperBounds[a])
        }
        let result: (theta: [Double], value: Double)?
        switch optimizer {
        case .newton:
            result = try? NewtonOptimizer.minimize(objective, start: x0, mode: .profilePoint, summary: &summary)
        case .bobyqa:
            // Small first steps: the start is the neighbouring point's optimum (sleepstudy's whole
            // profile: 9,353 evaluations with NLopt's default steps, 5,312 with these).
            let steps = Optimizer.localSteps(x0, floor: free.map { isCorrelation[$0] ? 0.1 : max(abs(omega[$0]) / sigma, 1e-3) })
            result = try? Optimizer.minimize({ objective.evaluate($0).map(objective.value) ?? .infinity }, start: x0,
                                             lower: objective.lowerBounds, upper: objective.upperBounds, initialStep: steps,
                                             summary: &summary)
        }
        guard let (x, d) = result else { return (.infinity, start) }
        return (d, objective.omega(at: x))
    }

    // MARK: β

    /// The least ML deviance with β_j = value, over θ from `start`; and the θ reached. `summary`
    /// gets the optimiser's counts.
    func profileFixed(_ j: Int, value: Double, start: [Double], pls: Solver, on cp: CrossProducts,
                      summary: inout OptimizerSummary) -> (Double, [Double]) {
        pls.replaceCrossProducts(with: cp.fixingCoefficient(j, at: value))
        guard let (theta, d) = try? optimizer.refit(pls, from: start, mode: .profilePoint, summary: &summary) else {
            return (.infinity, start)
        }
        return (d, theta)
    }

    // MARK: Tracing

    /// Traces parameter m (ω's components, then β) from the ML optimum in `direction` until
    /// |ζ| passes both z and 3, or a bound; the limit is where ζ = direction·z.
    func trace(_ m: Int, direction: Double, z: Double, thread: Int) -> ProfileTrace {
        let cutoff = max(3, z + 0.5)
        // A residual-variance ratio (after ω and β), a β, or a component of ω.
        let ratio = variance != nil && m >= omega.count + beta.count ? m - omega.count - beta.count : nil
        let isFixed = ratio == nil && m >= omega.count
        let centre = ratio.map { exp(variance!.rho[$0]) } ?? (isFixed ? beta[m - omega.count] : omega[m])
        // ζ at a value, carrying the optimum along as the next start; each point's counts go to `effort`.
        var effort = ProfileEffort()
        var state: [Double]
        // The least deviance at a value from a start, on given cross-products, and where it is.
        var deviance: (Double, [Double], CrossProducts) -> (Double, [Double])
        // The optimiser's bounds on the state (θ, or ω), which a start moved along the trace must keep.
        var bounds: (lower: [Double], upper: [Double])
        if let ratio {
            state = []
            bounds = ([], [])
            var options = FitOptions(reml: false, threads: 1)
            options.factorization = factorization
            options.optimizer = optimizer
            deviance = { _, _, cp in
                guard let refit = try? LinearMixedModel.fit(cp, options: options) else { return (.infinity, []) }
                effort.add(refit.optimizer)
                return (refit.objective, [])
            }
        } else if isFixed {
            let j = m - omega.count
            guard let pls = try? solver(cp.fixingCoefficient(j, at: beta[j])) else {
                return ProfileTrace(points: [(centre, 0)], limit: .nan, effort: effort)
            }
            state = theta
            bounds = (pls.lowerBounds, pls.upperBounds)
            deviance = { value, start, cp in
                var summary = OptimizerSummary()
                let (d, t) = self.profileFixed(j, value: value, start: start, pls: pls, on: cp, summary: &summary)
                effort.add(summary)
                return (d, t)
            }
        } else {
            state = omega
            bounds = (isCorrelation.map { $0 ? -1 : 0 }, isCorrelation.map { $0 ? 1 : .infinity })
            deviance = { value, start, cp in
                if self.variance != nil { self.workers[thread].replaceCrossProducts(with: cp) }
                var summary = OptimizerSummary()
                let (d, w) = self.profileVariance(m, value: value, start: start, thread: thread, summary: &summary)
                effort.add(summary)
                return (d, w)
            }
        }
        var evaluate: (Double, [Double]) -> (Double, [Double])
        if let variance {
            // The state carries ρ after the point's own; each point minimises over ρ (all but a
            // profiled ratio's) by BOBYQA, each evaluation a point on Σ_g δ_g⁻² (group g's).
            let k = state.count
            state += variance.rho
            let rhoBound = HeteroscedasticModel.rhoBound
            bounds = (bounds.lower + variance.rho.map { _ in -rhoBound }, bounds.upper + variance.rho.map { _ in rhoBound })
            evaluate = { value, start in
                let inner = Array(start[..<k])
                let d = self.minimizeOverVariance(fixing: ratio.map { ($0, log(value)) }, rhoStart: Array(start[k...])) { rho in
                    deviance(value, inner, HeteroscedasticModel.combined(variance.parts, rho: rho))
                }
                return (self.zeta(value, centre, d.deviance), d.state + d.rho)
            }
        } else {
            evaluate = { value, start in
                let (d, optimum) = deviance(value, start, self.cp)
                return (self.zeta(value, centre, d), optimum)
            }
        }
        let bound: Double = isFixed ? direction * .infinity
            : (ratio == nil && isCorrelation[m] ? direction : (direction < 0 ? 0 : .infinity))
        var step: Double
        if isFixed {
            step = standardErrors[m - omega.count] * cutoff / 8
        } else if ratio != nil {
            step = centre * 0.1
        } else {
            step = isCorrelation[m] ? 0.05 : max(abs(centre), 1e-3 * omega[omega.count - 1]) * 0.1
        }
        var points: [(value: Double, zeta: Double)] = [(centre, 0)]
        var starts: [[Double]] = [state]
        var limit = Double.nan
        for _ in 0..<60 {
            var next = points.last!.value + direction * step
            var atBound = false
            if direction * (next - bound) >= 0 {
                // The bound itself for correlations and SDs at 0 (σ's and a ratio's deviance is
                // infinite at 0: approach it).
                if ratio != nil || (!isFixed && !isCorrelation[m] && m == omega.count - 1) {
                    next = (points.last!.value + bound) / 2
                } else {
                    next = bound
                    atBound = true
                }
            }
            let k = points.count - 1
            let start = predicted(at: next, from: (max(0, k - 2)...k).map { (points[$0].value, starts[$0]) }, bounds: bounds)
            let (zeta, optimum) = evaluate(next, start)
            guard zeta.isFinite else { break }
            points.append((next, zeta))
            starts.append(optimum)
            if direction * zeta >= z && limit.isNaN {
                limit = refine((max(0, k - 2)...(k + 1)).map { (points[$0].value, points[$0].zeta, starts[$0]) },
                               target: direction * z, bounds: bounds, evaluate: evaluate)
            }
            if direction * zeta >= cutoff { break }
            if atBound {
                if limit.isNaN { limit = bound }
                break
            }
            // Aim for a rise in |ζ| of about cutoff/8 per step, from the local slope.
            let (a, b) = (points[points.count - 2], points[points.count - 1])
            let slope = abs((b.zeta - a.zeta) / (b.value - a.value))
            if slope.isFinite && slope > 0 { step = min(max((cutoff / 8) / slope, step / 2), step * 4) } else { step *= 2 }
        }
        return ProfileTrace(points: points, limit: limit, effort: effort)
    }

    /// The least of `deviance(ρ)` over ρ (BOBYQA from `rhoStart`), with component `fixing.0` held
    /// at `fixing.1`; the best point's deviance, state and ρ.
    private func minimizeOverVariance(fixing: (Int, Double)?, rhoStart: [Double],
                                      deviance: @escaping ([Double]) -> (Double, [Double])) -> (deviance: Double, state: [Double], rho: [Double]) {
        var rho0 = rhoStart
        if let (r, value) = fixing { rho0[r] = value }
        let free = rho0.indices.filter { $0 != fixing?.0 }
        var best = (deviance: Double.infinity, state: [Double](), rho: rho0)
        let f = { (x: [Double]) -> Double in
            var rho = rho0
            for (a, c) in free.enumerated() { rho[c] = x[a] }
            let (d, state) = deviance(rho)
            if d < best.deviance { best = (d, state, rho) }
            return d
        }
        if free.isEmpty {
            _ = f([])
            return best
        }
        var summary = OptimizerSummary()
        _ = try? HeteroscedasticModel.searchRho(f, start: free.map { rho0[$0] }, step: 0.05, summary: &summary)
        return best
    }

    /// The value where ζ = target, between the last two of the trace's points `known` (which
    /// bracket it; up to two more before them): inverse interpolation of v(ζ) through the last
    /// four points found (a cubic), or regula falsi on the bracket where that would leave it; each
    /// point optimised from a start interpolated between the optima of those four. (The Illinois
    /// method on the bracket took four points per limit on sleepstudy, this two.)
    private func refine(_ known: [(value: Double, zeta: Double, optimum: [Double])], target: Double,
                        bounds: (lower: [Double], upper: [Double]), evaluate: (Double, [Double]) -> (Double, [Double])) -> Double {
        var found = known
        var (a, b) = (found[found.count - 2], found[found.count - 1])
        for _ in 0..<30 {
            let falsi = (a.value * (b.zeta - target) - b.value * (a.zeta - target)) / (b.zeta - a.zeta)
            if abs(b.value - a.value) <= 1e-9 * max(abs(a.value), abs(b.value), 1e-12) { return falsi }
            let recent = Array(found.suffix(4))
            var c = zip(Self.lagrangeWeights(at: target, nodes: recent.map(\.zeta)), recent).reduce(0.0) { $0 + $1.0 * $1.1.value }
            if !(c > min(a.value, b.value) && c < max(a.value, b.value)) { c = falsi }
            let (zeta, optimum) = evaluate(c, predicted(at: c, from: recent.map { ($0.value, $0.optimum) }, bounds: bounds))
            if !zeta.isFinite || abs(zeta - target) < 1e-7 { return c }
            if (zeta > target) == (b.zeta > target) { b = (c, zeta, optimum) } else { a = (c, zeta, optimum) }
            found.append((c, zeta, optimum))
        }
        return (a.value * (b.zeta - target) - b.value * (a.zeta - target)) / (b.zeta - a.zeta)
    }

    /// The weights w_i with Σ w_i f(x_i) the value at x of the polynomial through (x_i, f(x_i)):
    /// Lagrange's basis polynomials at x.
    private static func lagrangeWeights(at x: Double, nodes: [Double]) -> [Double] {
        nodes.indices.map { i in
            nodes.indices.reduce(1.0) { w, j in j == i ? w : w * (x - nodes[j]) / (nodes[i] - nodes[j]) }
        }
    }

    /// The start for a point at `value`: the polynomial through the optima found at other values
    /// (the last three points of a trace, or the last four of a refinement), kept within the bounds.
    /// The optima move smoothly along a trace, so a start extrapolated from the points before, or
    /// interpolated inside a bracket, is closer than the nearest optimum.
    private func predicted(at value: Double, from known: [(value: Double, optimum: [Double])],
                           bounds: (lower: [Double], upper: [Double])) -> [Double] {
        let weights = Self.lagrangeWeights(at: value, nodes: known.map(\.value))
        return bounds.lower.indices.map { c in
            min(max(zip(weights, known).reduce(0.0) { $0 + $1.0 * $1.1.optimum[c] }, bounds.lower[c]), bounds.upper[c])
        }
    }
}

extension CrossProducts {
    /// The cross-products with β_j fixed at `value`: x_jβ_j moved into the response and column j
    /// of X removed (y' = y − x_jβ_j).
    func fixingCoefficient(_ j: Int, at value: Double) -> CrossProducts {
        let q = randomEffectsCount, p = fixedCount
        let others = (0..<p).filter { $0 != j }
        var wy = [Double](repeating: 0, count: q + others.count)
        for i in 0..<q { wy[i] = zxy[i + p * q] - value * zxy[i + j * q] }
        for (k, c) in others.enumerated() { wy[q + k] = xyxy[c + p * (p + 1)] - value * xx(c, j) }
        let yy = xyxy[p + p * (p + 1)] - 2 * value * xyxy[j + p * (p + 1)] + value * value * xx(j, j)
        return selectingFixed(others).replacingResponse(wy, yy)
    }
}

extension ProfileEngine where Solver == PenalizedLeastSquares {
    /// On the fit's factorisation: a problem per thread, a REML fit refitted by ML from scratch.
    convenience init(direct fit: FitResult, threads: Int) throws {
        var options = FitOptions(reml: false, ordering: fit.ordering)
        options.optimizer = fit.optimizerChoice
        options.factorization = fit.factorization
        let ml = fit.reml ? try LinearMixedModel.fit(fit.crossProducts, options: options) : fit
        let make = { (cp: CrossProducts) in try PenalizedLeastSquares(cp, reml: false, factorization: fit.factorization) }
        self.init(fit, ml: ml, minimum: ml.objective, workers: try (0..<max(1, threads)).map { _ in try make(fit.crossProducts) },
                  solver: make)
    }
}

extension ProfileEngine where Solver == PenalizedLeastSquares {
    /// A varIdent fit's: its ML fit (ρ̂ re-estimated), problems on that fit's cross-products.
    convenience init(heteroscedastic fit: FitResult, threads: Int) throws {
        guard let parts = fit.residualVarianceParts, let variance = fit.residualVariance else {
            preconditionFailure("a varIdent fit carries its groups' cross-products")
        }
        var options = FitOptions(reml: false, ordering: fit.ordering, threads: threads)
        options.optimizer = fit.optimizerChoice
        options.factorization = fit.factorization
        let ml = fit.reml
            ? try HeteroscedasticModel.fitGroups(parts, model: variance.model, names: variance.names, options: options,
                                                 start: variance.logRatios, testConstant: false)
            : fit
        let make = { (cp: CrossProducts) in try PenalizedLeastSquares(cp, reml: false, factorization: fit.factorization) }
        self.init(fit, ml: ml, minimum: ml.objective, workers: try (0..<max(1, threads)).map { _ in try make(ml.crossProducts) },
                  solver: make)
        self.variance = (parts, ml.residualVariance!.logRatios)
    }
}

extension ProfileEngine where Solver == IterativePenalizedLeastSquares {
    /// On the iterative path: one problem whose solves use every thread, on the fit's last probes
    /// (so the deviance is one smooth function of the parameters, and ζ compares like with like:
    /// the minimum is the ML deviance on those probes, not the fit's re-estimated criterion); a
    /// REML fit refitted by ML by Newton from θ̂. β's problems share its operator (same Z'Z).
    convenience init(iterative fit: FitResult, threads: Int) throws {
        guard let settings = fit.iterative, let monteCarlo = fit.monteCarlo else {
            throw InputError("--profile: this fit carries no settings of the iterative solver")
        }
        let worker = IterativePenalizedLeastSquares(fit.crossProducts, reml: false, settings: settings, threads: max(1, threads),
                                                    communicator: SingleProcess())
        worker.probes = monteCarlo.probes
        var summary = fit.optimizer
        var theta = fit.theta
        if fit.reml {
            summary = OptimizerSummary()
            theta = try NewtonOptimizer.minimize(worker, start: fit.theta, summary: &summary).theta
        }
        guard let e = worker.evaluate(theta) else {
            throw InputError("--profile: the ML deviance could not be evaluated at the fit's estimates")
        }
        let ml = FitResult(crossProducts: fit.crossProducts, reml: false, factor: worker.factor, theta: theta, beta: e.beta,
                           sigma: worker.residualSD(e), r: e.r, modes: worker.conditionalModes(theta, e), objective: e.deviance,
                           optimizer: summary, notes: [])
        self.init(fit, ml: ml, minimum: e.deviance, workers: [worker], solver: { worker.sharingOperator(with: $0) })
    }
}
