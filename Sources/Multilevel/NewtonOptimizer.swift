import Foundation

/// What `NewtonOptimizer` minimises: a function within bounds, with its gradient and an
/// approximation to its Hessian (the AI matrix) at an evaluated point. The fit's profiled
/// deviance over θ (`PenalizedLeastSquares`) and the profiles' deviance over the free SDs,
/// correlations and σ (`ProfileDeviance`) are two.
protocol NewtonObjective {
    associatedtype Evaluation
    /// Bounds of each coordinate (−∞ or +∞ where there is none).
    var lowerBounds: [Double] { get }
    var upperBounds: [Double] { get }
    /// The function's state at x, or nil where it is undefined.
    func evaluate(_ x: [Double]) -> Evaluation?
    func value(_ e: Evaluation) -> Double
    /// The gradient and the information matrix (column-major) at x, given `evaluate(x)`, the last evaluation.
    func derivatives(_ x: [Double], _ e: Evaluation) -> NewtonOptimizer.Derivatives
    /// The gradient alone, likewise.
    func gradient(_ x: [Double], _ e: Evaluation) -> [Double]
    /// The least decrease from `value` the function can confirm: below it, rounding (or the
    /// iterative path's discrete CG iterations) decide, and a step is judged by its model.
    func resolvableDecrease(_ value: Double) -> Double
    /// How far the change of the value along `step` may exceed what the gradient given last
    /// promises, by error rather than by the function's shape: 0 where the gradient is the
    /// value's own, the Monte-Carlo error of the difference on the iterative path.
    func slack(along step: [Double]) -> Double
    /// Whether a Newton step is too small to matter: the iterative path stops when it is a
    /// hundredth of each coordinate's standard error (its estimates carry a Monte-Carlo error
    /// of up to a tenth of it); the direct path never (it stops on the scaled gradient).
    func isNegligible(step: [Double], information: [Double]) -> Bool
}

extension NewtonObjective {
    func resolvableDecrease(_ value: Double) -> Double { NewtonOptimizer.resolvable * max(1, abs(value)) }
    func slack(along step: [Double]) -> Double { 0 }
    func isNegligible(step: [Double], information: [Double]) -> Bool { false }
}

/// The fit's objective: the profiled deviance over θ.
extension PenalizedLeastSquares: NewtonObjective {
    var lowerBounds: [Double] { factor.lowerBounds }
    var upperBounds: [Double] { factor.lowerBounds.map { _ in .infinity } }
    func value(_ e: Evaluation) -> Double { e.deviance }
    func derivatives(_ theta: [Double], _ e: Evaluation) -> NewtonOptimizer.Derivatives {
        let modes = modes(theta, e)
        return (gradient(e, modes), averageInformation(e, modes))
    }
}

/// Minimises a `NewtonObjective` — the profiled deviance over θ (`PenalizedLeastSquares.gradient`,
/// `averageInformation`), or a profile point's deviance over ω — by Newton steps with the
/// average-information matrix: each iteration is one factorisation, one selected inverse and a
/// few solves, and a fit takes a handful of them, where BOBYQA takes 30–180 factorisations.
///
/// - Steps: Δ = −H⁻¹g, H made positive definite by adding τI if its Cholesky fails (τ from 1e-8
///   of its largest diagonal entry, ×10 until it succeeds).
/// - Bounds: a coordinate that a step would take past a bound (a diagonal entry of T_k below 0, a
///   correlation past ±1) moves to a tenth of its distance from it instead, and one left within
///   1e-6 of a bound at convergence is tried at the bound (kept there if the value is no higher).
///   An active set (hold an entry at 0, release it when its gradient points inward) does not work
///   here: the deviance depends on the last diagonal entry of T_k only through its square, so at 0
///   that gradient is exactly 0 whatever the optimum, and an entry held there would never be
///   released (a correlation at ±1 has an infinite one). For the same reason a coordinate that
///   starts within 0.01 of a bound (a refit from a singular θ̂) starts 0.01 inside it.
/// - Line search on the value itself: halve the step until the Armijo condition
///   d(θ') ≤ d(θ) + 10⁻⁴ g'(θ' − θ) holds.
/// - Converged when the scaled gradient |H⁻¹g| is below 1e-6 in every coordinate. A step that
///   promises a decrease (−½g'Δ) below 1e-11 of the deviance is taken whole, without the line
///   search, if the deviance does not rise by more than its rounding: the deviance's own
///   rounding is about 1e-12 of it (penicillin: ±6e-10 on 330.86 at θ̂), so a line search on
///   such decreases follows rounding (it took 100 iterations there from a start near θ̂), while
///   the analytic gradient still points the way (nearcollinear: θ 2.4e-6 from the optimum when
///   the promised decrease was 1e-11 of it, enough to move a standard error by 1.5e-6). After
///   3 such steps, or one the deviance refuses, the point is accepted as it is.
/// - Profile points (`Mode.profilePoint`) start near their optimum but away from the model's:
///   there the AI matrix misses a part of the Hessian that grows with the distance, and Newton
///   converged only linearly (sleepstudy's sd(Days) at ζ = 2: 17 iterations). For them H is the
///   information matrix at the start, then updated by the symmetric rank-one formula
///   H += rr'/(r's), r = y − Hs (s the last step, y the change in the gradient; skipped when
///   |r's| < 1e-8 |r||s|), and later iterations need the gradient alone. They are converged too
///   when the decrease a step promises, −g'Δ/2, is below 10⁻⁶ (ζ = √(d − d̂) is then within
///   3·10⁻⁷ of its optimum's near the limits), or when the last step taken did not lower the
///   deviance at all (it is at the deviance's rounding, where the scaled gradient may stay above
///   1e-6: penicillin's σ profile took 100 iterations there). A fit starts far from its optimum,
///   where secants mislead (the reference fits' 3–8 iterations became 4–12).
/// - When no halving decreases the value (or the start cannot be evaluated), BOBYQA takes
///   over from the last point, and the summary says so.
enum NewtonOptimizer {
    static let tolerance = 1e-6
    /// The smallest decrease of the deviance, relative to it, that the deviance can confirm.
    static let resolvable = 1e-11
    /// Whole steps taken on the model alone below that, before the point is accepted as it is.
    static let maxTrustedSteps = 3
    static let maxIterations = 100

    /// A fit (and a bootstrap refit), or a profile point (see above).
    enum Mode { case fit, profilePoint }

    /// The gradient and AI matrix at the point returned, when Newton's last iteration computed them
    /// there (not after a move to a bound or BOBYQA), so the convergence check need not again.
    typealias Derivatives = (gradient: [Double], information: [Double])

    /// The minimiser and minimum; `summary` gets the algorithm, iterations, evaluations and
    /// gradients, and the scaled gradient at the end. `trace` sees every deviance evaluation.
    static func minimize<Objective: NewtonObjective>(_ f: Objective, start: [Double], mode: Mode = .fit,
                         trace: ((_ evaluation: Int, _ theta: [Double], _ deviance: Double) -> Void)? = nil,
                         summary: inout OptimizerSummary) throws -> (theta: [Double], value: Double) {
        var derivatives: Derivatives?
        return try minimize(f, start: start, mode: mode, trace: trace, summary: &summary, derivatives: &derivatives)
    }

    /// As `minimize`, also giving the derivatives at the point returned when it has them.
    static func minimize<Objective: NewtonObjective>(_ f: Objective, start: [Double], mode: Mode = .fit,
                         trace: ((_ evaluation: Int, _ theta: [Double], _ deviance: Double) -> Void)?,
                         summary: inout OptimizerSummary, derivatives: inout Derivatives?) throws -> (theta: [Double], value: Double) {
        derivatives = nil
        let lower = f.lowerBounds, upper = f.upperBounds
        var theta = start.indices.map { i in
            var x = start[i]
            if lower[i].isFinite { x = max(x, lower[i] + 0.01) }
            if upper[i].isFinite { x = min(x, upper[i] - 0.01) }
            return x
        }
        summary.algorithm = "Newton (average information)"
        summary.iterations = 0
        summary.evaluations = 0
        summary.gradients = 0
        func evaluate(_ t: [Double]) -> Objective.Evaluation? {
            summary.evaluations += 1
            let e = f.evaluate(t)
            trace?(summary.evaluations, t, e.map(f.value) ?? .infinity)
            return e
        }
        func fallBack(from t: [Double], reason: String) throws -> (theta: [Double], value: Double) {
            var bobyqa = OptimizerSummary()
            // Counted here: `bobyqa` is being written by `Optimizer.minimize` while this closure runs.
            var counted = summary.evaluations
            let result = try Optimizer.minimize({ t in
                let v = f.evaluate(t).map(f.value) ?? .infinity
                counted += 1
                trace?(counted, t, v)
                return v
            }, start: t, lower: lower, upper: upper, initialStep: Optimizer.localSteps(t, floor: t.map { _ in 0.1 }), summary: &bobyqa)
            summary.evaluations += bobyqa.evaluations
            summary.returnCode = bobyqa.returnCode
            summary.algorithm = "Newton (average information), then NLOPT_LN_BOBYQA"
            summary.fallback = reason
            return result
        }
        guard var e = evaluate(theta) else {
            return try fallBack(from: theta, reason: "the deviance could not be evaluated at the start")
        }
        var secant: (theta: [Double], gradient: [Double], information: [Double])?
        var trustedSteps = 0
        var stalled = false
        while summary.iterations < maxIterations {
            var (g, h): ([Double], [Double])
            if let last = secant {
                g = f.gradient(theta, e)
                h = last.information
                updateBySecant(&h, step: zip(theta, last.theta).map { $0 - $1 }, change: zip(g, last.gradient).map { $0 - $1 })
            } else {
                (g, h) = f.derivatives(theta, e)
            }
            if mode == .profilePoint { secant = (theta, g, h) }
            summary.gradients += 1
            let step = newtonStep(h, g, free: Array(theta.indices))
            summary.maxGradient = step.map(abs).max() ?? 0
            guard step.allSatisfy(\.isFinite) else {
                return try fallBack(from: theta, reason: "the Newton step was not finite (derivatives undefined or H not positive definite)")
            }
            let decrease = -0.5 * zip(g, step).reduce(0.0) { $0 + $1.0 * $1.1 }
            // Below the deviance's rounding the deviance cannot judge a step, and the model (the
            // analytic gradient) is trusted for a few whole steps instead of the line search.
            let unresolved = decrease >= 0 && decrease < f.resolvableDecrease(f.value(e))
            func accept() -> (theta: [Double], value: Double) {
                let result = snapToBounds(f, theta, e, lower: lower, upper: upper, evaluate: evaluate)
                if result.theta == theta { derivatives = (g, h) }
                return result
            }
            if summary.maxGradient < tolerance || f.isNegligible(step: step, information: h)
                || (mode == .profilePoint && (decrease < 1e-6 || stalled))
                || (unresolved && trustedSteps == maxTrustedSteps) {
                return accept()
            }
            if unresolved {
                let trial = zip(theta, step).map { $0 + $1 }
                if theta.indices.allSatisfy({ trial[$0] >= lower[$0] && trial[$0] <= upper[$0] }), let et = evaluate(trial),
                   f.value(et) <= f.value(e) + 10 * f.resolvableDecrease(f.value(e)) {
                    theta = trial
                    e = et
                    trustedSteps += 1
                    summary.iterations += 1
                    continue
                }
                _ = evaluate(theta)   // the factor back at θ
                return accept()
            }
            let before = f.value(e)
            var alpha = 1.0
            var accepted = false
            for _ in 0..<40 {
                var trial = theta
                for i in theta.indices {
                    trial[i] = theta[i] + alpha * step[i]
                    if trial[i] < lower[i] { trial[i] = lower[i] + 0.1 * (theta[i] - lower[i]) }
                    if trial[i] > upper[i] { trial[i] = upper[i] - 0.1 * (upper[i] - theta[i]) }
                }
                let slope = theta.indices.reduce(0.0) { $0 + g[$1] * (trial[$1] - theta[$1]) }
                let move = theta.indices.map { trial[$0] - theta[$0] }
                if let et = evaluate(trial), f.value(et) <= f.value(e) + 1e-4 * min(slope, 0) + f.slack(along: move) {
                    theta = trial
                    e = et
                    accepted = true
                    break
                }
                alpha /= 2
            }
            summary.iterations += 1
            stalled = f.value(e) >= before
            if !accepted {
                return try fallBack(from: theta, reason: "a Newton step did not decrease the deviance after 40 halvings")
            }
        }
        return try fallBack(from: theta, reason: "Newton did not converge in \(maxIterations) iterations")
    }

    /// The symmetric rank-one update of H for Hs = y: H += rr'/(r's) with r = y − Hs, unless
    /// |r's| < 1e-8 |r||s| (nothing to learn along s, or r ⟂ s).
    private static func updateBySecant(_ h: inout [Double], step s: [Double], change y: [Double]) {
        let n = s.count
        let r = (0..<n).map { i in (0..<n).reduce(y[i]) { $0 - h[i + $1 * n] * s[$1] } }
        let rs = zip(r, s).reduce(0.0) { $0 + $1.0 * $1.1 }
        let norms = r.reduce(0.0) { $0 + $1 * $1 }.squareRoot() * s.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        guard abs(rs) > 1e-8 * norms else { return }
        for j in 0..<n { for i in 0..<n { h[i + j * n] += r[i] * r[j] / rs } }
    }

    /// θ with every coordinate within 1e-6 of a bound (a diagonal entry of T_k below 1e-6) set to
    /// that bound, if that does not raise the value.
    private static func snapToBounds<Objective: NewtonObjective>(
        _ f: Objective, _ theta: [Double], _ e: Objective.Evaluation, lower: [Double], upper: [Double],
        evaluate: ([Double]) -> Objective.Evaluation?) -> (theta: [Double], value: Double) {
        var snapped = theta
        for i in theta.indices {
            if theta[i] > lower[i] && theta[i] - lower[i] < 1e-6 { snapped[i] = lower[i] }
            if theta[i] < upper[i] && upper[i] - theta[i] < 1e-6 { snapped[i] = upper[i] }
        }
        guard snapped != theta else { return (theta, f.value(e)) }
        if let es = evaluate(snapped), f.value(es) <= f.value(e) { return (snapped, f.value(es)) }
        _ = evaluate(theta)  // leave the factor at the point returned
        return (theta, f.value(e))
    }

    /// −H_FF⁻¹ g_F, with τI added to H_FF until its Cholesky succeeds. A matrix that no shift up
    /// to 10¹² of its largest diagonal entry makes positive definite (one holding NaN or ±∞)
    /// gives NaN steps, which `minimize` hands to BOBYQA.
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
