import CNLopt
import Foundation

/// Settings and outcome of the derivative-free minimisation of the profiled deviance over θ.
public struct OptimizerSummary: Sendable, Equatable {
    /// NLopt's algorithm name.
    public var algorithm = "NLOPT_LN_BOBYQA"
    /// Stop when one step changes the objective by less than this (absolute).
    public var ftolAbs = 1e-8
    /// Stop when one step changes every θ entry by less than this (absolute).
    public var xtolAbs = 1e-8
    /// Stop when one step changes θ by less than this relative to |θ|: the default of R's
    /// nloptr, which lme4 leaves in place, so lme4's fits stop here too.
    public var xtolRel = 1e-4
    /// The most objective evaluations allowed.
    public var maxEvaluations = 100_000
    /// Filled in by the fit: Newton iterations, deviance evaluations and gradient (with AI matrix;
    /// at a profile point only the first, see `NewtonOptimizer.Mode`) evaluations used, NLopt's
    /// return code, the largest |scaled gradient| at the optimum over the parameters not at a
    /// bound, and the convergence verdict.
    public var iterations = 0
    public var evaluations = 0
    public var gradients = 0
    public var returnCode = 0
    public var maxGradient = 0.0
    public var converged = false
    /// A message for the reader when the fit did not converge cleanly; nil when it did.
    public var warning: String?
    /// Why Newton handed over to BOBYQA, when it did.
    public var fallback: String?

    public init() {}
}

/// Which optimiser fits θ: Newton steps with the average-information matrix (the default), or
/// NLopt's derivative-free BOBYQA, as lme4.
public enum OptimizerChoice: String, CaseIterable, Sendable {
    case newton
    case bobyqa
}

extension OptimizerChoice {
    /// Minimises the profiled deviance from a start already near the optimum: a bootstrap
    /// replicate from θ̂, a profile point from its neighbour's optimum. BOBYQA starts with small
    /// steps there (`Optimizer.localSteps`: sleepstudy's refits took 73 evaluations on average
    /// with NLopt's default steps and 43 with these, InstEval's 25 and 20, reaching the same
    /// deviances within ±7e-7); Newton needs no such setting, but is told when it refits a
    /// profile point (`NewtonOptimizer.Mode`).
    func refit<Objective: NewtonObjective>(_ f: Objective, from start: [Double], mode: NewtonOptimizer.Mode = .fit,
                                           summary: inout OptimizerSummary) throws -> (theta: [Double], value: Double) {
        switch self {
        case .newton:
            return try NewtonOptimizer.minimize(f, start: start, mode: mode, summary: &summary)
        case .bobyqa:
            return try Optimizer.minimize({ f.evaluate($0).map(f.value) ?? .infinity }, start: start, lower: f.lowerBounds,
                                          initialStep: Optimizer.localSteps(start, floor: start.map { _ in 0.1 }), summary: &summary)
        }
    }
}

/// Minimises f(θ) subject to θ ≥ lower with NLopt's BOBYQA (the optimiser lme4 uses by default).
enum Optimizer {
    private final class Box {
        let f: ([Double]) -> Double
        var evaluations = 0
        init(_ f: @escaping ([Double]) -> Double) { self.f = f }
    }

    /// First steps for a start that is already near the optimum (a refit from θ̂, the next
    /// point of a profile): a tenth of each |x_i|, at least a tenth of `floor_i`. NLopt's
    /// default steps (up to ¾ of the distance to a bound) first explore far away.
    static func localSteps(_ x: [Double], floor: [Double]) -> [Double] {
        zip(x, floor).map { 0.1 * max(abs($0), $1) }
    }

    /// Returns the minimiser and minimum; `summary` gets the evaluation count and return code.
    static func minimize(_ f: @escaping ([Double]) -> Double, start: [Double], lower: [Double], upper: [Double]? = nil,
                         initialStep: [Double]? = nil,
                         summary: inout OptimizerSummary) throws -> (theta: [Double], value: Double) {
        let n = start.count
        let box = Box(f)
        guard let opt = nlopt_create(NLOPT_LN_BOBYQA, UInt32(n)) else {
            throw InputError("optimizer: NLopt could not create BOBYQA for \(n) parameters")
        }
        defer { nlopt_destroy(opt) }
        var lb = lower
        nlopt_set_lower_bounds(opt, &lb)
        if var ub = upper { nlopt_set_upper_bounds(opt, &ub) }
        if var step = initialStep { nlopt_set_initial_step(opt, &step) }
        nlopt_set_ftol_abs(opt, summary.ftolAbs)
        nlopt_set_xtol_abs1(opt, summary.xtolAbs)
        nlopt_set_xtol_rel(opt, summary.xtolRel)
        nlopt_set_maxeval(opt, Int32(summary.maxEvaluations))
        let context = Unmanaged.passUnretained(box).toOpaque()
        nlopt_set_min_objective(opt, { n, x, _, data in
            let box = Unmanaged<Box>.fromOpaque(data!).takeUnretainedValue()
            box.evaluations += 1
            let theta = Array(UnsafeBufferPointer(start: x, count: Int(n)))
            let v = box.f(theta)
            return v.isFinite ? v : Double.greatestFiniteMagnitude
        }, context)
        var x = start
        var value = 0.0
        let code = withExtendedLifetime(box) { nlopt_optimize(opt, &x, &value) }
        summary.evaluations = box.evaluations
        summary.returnCode = Int(code.rawValue)
        if code.rawValue < 0 {
            throw InputError("optimizer: BOBYQA failed (NLopt code \(code.rawValue)) after \(box.evaluations) evaluations")
        }
        return (x, value)
    }
}
