import Foundation

/// Minimises the profiled deviance over θ by Newton steps with the average-information matrix
/// (`PenalizedLeastSquares.gradient`, `averageInformation`): each iteration is one
/// factorisation, one selected inverse and a few solves, and a fit takes a handful of them,
/// where BOBYQA takes 30–180 factorisations.
///
/// - Steps: Δ = −H⁻¹g, H made positive definite by adding τI if its Cholesky fails (τ from 1e-8
///   of its largest diagonal entry, ×10 until it succeeds).
/// - Bounds: a diagonal entry of T_k that a step would take below 0 moves to a tenth of its value
///   instead, and one left below 1e-6 at convergence is tried at 0 (kept there if the deviance is
///   no higher). An active set (hold an entry at 0, release it when its gradient points inward)
///   does not work here: the deviance depends on the last diagonal entry of T_k only through its
///   square, so at 0 that gradient is exactly 0 whatever the optimum, and an entry held there
///   would never be released. For the same reason a start at 0 (a refit from a singular θ̂)
///   starts at 0.01.
/// - Line search on the deviance itself: halve the step until the Armijo condition
///   d(θ') ≤ d(θ) + 10⁻⁴ g'(θ' − θ) holds.
/// - Converged when the scaled gradient |H⁻¹g| is below 1e-6 in every coordinate. A step that
///   promises a decrease (−½g'Δ) below 1e-11 of the deviance is taken whole, without the line
///   search, if the deviance does not rise by more than its rounding: the deviance's own
///   rounding is about 1e-12 of it (penicillin: ±6e-10 on 330.86 at θ̂), so a line search on
///   such decreases follows rounding (it took 100 iterations there from a start near θ̂), while
///   the analytic gradient still points the way (nearcollinear: θ 2.4e-6 from the optimum when
///   the promised decrease was 1e-11 of it, enough to move a standard error by 1.5e-6). After
///   3 such steps, or one the deviance refuses, the point is accepted as it is.
/// - When no halving decreases the deviance (or the start cannot be evaluated), BOBYQA takes
///   over from the last point, and the summary says so.
enum NewtonOptimizer {
    static let tolerance = 1e-6
    /// The smallest decrease of the deviance, relative to it, that the deviance can confirm.
    static let resolvable = 1e-11
    /// Whole steps taken on the model alone below that, before the point is accepted as it is.
    static let maxTrustedSteps = 3
    static let maxIterations = 100

    /// The gradient and AI matrix at the point returned, when Newton's last iteration computed them
    /// there (not after a move to a bound or BOBYQA), so the convergence check need not again.
    typealias Derivatives = (gradient: [Double], information: [Double])

    /// The minimiser and minimum; `summary` gets the algorithm, iterations, evaluations and
    /// gradients, and the scaled gradient at the end. `trace` sees every deviance evaluation.
    static func minimize(_ pls: PenalizedLeastSquares, start: [Double],
                         trace: ((_ evaluation: Int, _ theta: [Double], _ deviance: Double) -> Void)? = nil,
                         summary: inout OptimizerSummary) throws -> (theta: [Double], value: Double) {
        var derivatives: Derivatives?
        return try minimize(pls, start: start, trace: trace, summary: &summary, derivatives: &derivatives)
    }

    /// As `minimize`, also giving the derivatives at the point returned when it has them.
    static func minimize(_ pls: PenalizedLeastSquares, start: [Double],
                         trace: ((_ evaluation: Int, _ theta: [Double], _ deviance: Double) -> Void)?,
                         summary: inout OptimizerSummary, derivatives: inout Derivatives?) throws -> (theta: [Double], value: Double) {
        derivatives = nil
        let lower = pls.factor.lowerBounds
        var theta = zip(start, lower).map { $1 == 0 ? max($0, 0.01) : $0 }
        summary.algorithm = "Newton (average information)"
        summary.iterations = 0
        summary.evaluations = 0
        summary.gradients = 0
        func evaluate(_ t: [Double]) -> PenalizedLeastSquares.Evaluation? {
            summary.evaluations += 1
            let e = pls.evaluate(t)
            trace?(summary.evaluations, t, e?.deviance ?? .infinity)
            return e
        }
        func fallBack(from t: [Double], reason: String) throws -> (theta: [Double], value: Double) {
            var bobyqa = OptimizerSummary()
            let counted = summary.evaluations
            let result = try Optimizer.minimize({ t in
                let v = pls.objective(t)
                trace?(counted + bobyqa.evaluations + 1, t, v)
                return v
            }, start: t, lower: lower, initialStep: Optimizer.localSteps(t, floor: t.map { _ in 0.1 }), summary: &bobyqa)
            summary.evaluations += bobyqa.evaluations
            summary.returnCode = bobyqa.returnCode
            summary.algorithm = "Newton (average information), then NLOPT_LN_BOBYQA"
            summary.fallback = reason
            return result
        }
        guard var e = evaluate(theta) else {
            return try fallBack(from: theta, reason: "the deviance could not be evaluated at the start")
        }
        var trustedSteps = 0
        while summary.iterations < maxIterations {
            let g = pls.gradient(theta, e)
            let h = pls.averageInformation(theta, e)
            summary.gradients += 1
            let step = newtonStep(h, g, free: Array(theta.indices))
            summary.maxGradient = step.map(abs).max() ?? 0
            // The decrease the step promises, −½g'Δ on the quadratic model: below the deviance's
            // rounding, the deviance cannot judge the step, and the model (the analytic gradient)
            // is trusted for a few whole steps instead of the line search.
            let promised = -0.5 * theta.indices.reduce(0.0) { $0 + g[$1] * step[$1] }
            let unresolved = promised >= 0 && promised < resolvable * max(abs(e.deviance), 1)
            func accept() -> (theta: [Double], value: Double) {
                let result = snapToBounds(pls, theta, e, lower: lower, evaluate: evaluate)
                if result.theta == theta { derivatives = (g, h) }
                return result
            }
            if summary.maxGradient < tolerance || (unresolved && trustedSteps == maxTrustedSteps) { return accept() }
            if unresolved {
                let trial = zip(theta, step).map { $0 + $1 }
                if zip(trial, lower).allSatisfy({ $0 >= $1 }), let et = evaluate(trial),
                   et.deviance <= e.deviance + 10 * resolvable * max(abs(e.deviance), 1) {
                    theta = trial
                    e = et
                    trustedSteps += 1
                    summary.iterations += 1
                    continue
                }
                _ = evaluate(theta)   // the factor back at θ
                return accept()
            }
            var alpha = 1.0
            var accepted = false
            for _ in 0..<40 {
                var trial = theta
                for i in theta.indices {
                    trial[i] = theta[i] + alpha * step[i]
                    if trial[i] < lower[i] { trial[i] = lower[i] + 0.1 * (theta[i] - lower[i]) }
                }
                let slope = theta.indices.reduce(0.0) { $0 + g[$1] * (trial[$1] - theta[$1]) }
                if let et = evaluate(trial), et.deviance <= e.deviance + 1e-4 * min(slope, 0) {
                    theta = trial
                    e = et
                    accepted = true
                    break
                }
                alpha /= 2
            }
            summary.iterations += 1
            if !accepted {
                return try fallBack(from: theta, reason: "a Newton step did not decrease the deviance after 40 halvings")
            }
        }
        return try fallBack(from: theta, reason: "Newton did not converge in \(maxIterations) iterations")
    }

    /// θ with every diagonal entry below 1e-6 set to its bound, if that does not raise the deviance.
    private static func snapToBounds(_ pls: PenalizedLeastSquares, _ theta: [Double], _ e: PenalizedLeastSquares.Evaluation,
                                     lower: [Double], evaluate: ([Double]) -> PenalizedLeastSquares.Evaluation?)
        -> (theta: [Double], value: Double) {
        let near = theta.indices.filter { lower[$0] == 0 && theta[$0] > 0 && theta[$0] < 1e-6 }
        guard !near.isEmpty else { return (theta, e.deviance) }
        var snapped = theta
        for i in near { snapped[i] = 0 }
        if let es = evaluate(snapped), es.deviance <= e.deviance { return (snapped, es.deviance) }
        _ = evaluate(theta)  // leave the factor at the point returned
        return (theta, e.deviance)
    }

    /// −H_FF⁻¹ g_F, with τI added to H_FF until its Cholesky succeeds. A matrix that no shift up
    /// to 10¹² of its largest diagonal entry makes positive definite (one holding NaN or ±∞)
    /// gives NaN steps, which the line search rejects and the caller hands to BOBYQA.
    static func newtonStep(_ h: [Double], _ g: [Double], free: [Int]) -> [Double] {
        let m = free.count, n = g.count
        guard m > 0 else { return [] }
        var hf = [Double](repeating: 0, count: m * m)
        for (b, j) in free.enumerated() { for (a, i) in free.enumerated() { hf[a + b * m] = h[i + j * n] } }
        let largest = max((0..<m).map { hf[$0 + $0 * m] }.max() ?? 1, 1e-12)
        var tau = 0.0
        while true {
            var shifted = hf
            for a in 0..<m { shifted[a + a * m] += tau }
            if let r = DenseCholesky.upper(shifted, order: m) {
                // R'R Δ = −g: R'w = −g, then R Δ = w.
                let w = DenseCholesky.solveUpperTransposed(r, leading: m, order: m, free.map { -g[$0] })
                return DenseCholesky.solveUpper(r, leading: m, order: m, w)
            }
            tau = tau == 0 ? 1e-8 * largest : tau * 10
            guard tau.isFinite, tau <= 1e12 * largest else { return free.map { _ in .nan } }
        }
    }
}
