import Foundation

/// What a profile needs of a PLS problem at θ: the direct path's (`PenalizedLeastSquares`, a
/// factor) or the iterative path's (`IterativePenalizedLeastSquares`, conjugate gradients and the
/// fit's probes).
protocol ProfileSolver: AnyObject, NewtonObjective {
    /// What the gradient and the AI matrix share at θ.
    associatedtype Modes
    var crossProducts: CrossProducts { get }
    /// log|A| (A = Λ'Z'ZΛ + I) and r² at an evaluation of an ML problem.
    func logDeterminant(_ e: Evaluation) -> Double
    func penalizedRSS(_ e: Evaluation) -> Double
    func modes(_ theta: [Double], _ e: Evaluation) -> Modes
    /// ∂log|A|/∂θ and ∂r²/∂θ.
    func gradientParts(_ e: Evaluation, _ modes: Modes) -> (logDeterminant: [Double], residual: [Double])
    /// The AI matrix in (θ, σ²) at a given σ², σ² last ((m + 1) × (m + 1), column-major).
    func averageInformation(_ e: Evaluation, _ modes: Modes, sigma2: Double) -> [Double]
    /// Takes other cross-products with the same Z'Z and fixed effects (a β profile's moved response).
    func replaceCrossProducts(with cp: CrossProducts)
}

extension PenalizedLeastSquares: ProfileSolver {
    func logDeterminant(_ e: Evaluation) -> Double { e.logDetL2 }
    func penalizedRSS(_ e: Evaluation) -> Double { e.penalizedRSS }
}

extension IterativePenalizedLeastSquares: ProfileSolver {
    func logDeterminant(_ e: Evaluation) -> Double { e.logDetA }
    func penalizedRSS(_ e: Evaluation) -> Double { e.penalizedRSS }
}

/// The objective of an SD, correlation or σ profile point: the ML deviance with σ explicit,
///
///     d(ω) = log|L_θ|² + r²(θ)/σ² + n log(2πσ²)   (− Σ log w_i with precision weights),
///
/// over the free components of ω (each term's SDs and correlations in θ's order, then σ; the
/// others held at their values), each divided by a scale (x = ω/s, with s = σ̂ for SDs and σ and
/// 1 for correlations, so that x is on θ's scale and NewtonOptimizer's absolute tolerances mean
/// there what they mean for θ). Per term θ holds T = D L_R/σ (D the SDs, L_R the Cholesky factor
/// of the correlation matrix R, so TT' = Σ_k/σ²), which is smooth in the SDs down to 0.
///
/// The derivatives come from the PLS problem's in ψ = (θ, σ²) by the chain rule:
///
///     g_ψ = (∂log|A|/∂θ + (∂r²/∂θ)/σ²,  n/σ² − r²/σ⁴),   H_ψ = the AI matrix in (θ, σ²) at σ²,
///     g_x = B'g_ψ,   H_x = B'H_ψ B + S C S,   B = J[:, free] S,   S = diag(s),
///
/// with J = ∂ψ/∂ω (`ProfileCoordinates.jacobian`). The second-order term C is that of φ = (the Σ_k, σ²), in which V
/// is linear, so that the AI matrix (y'PV̇PV̇Py) misses no term in V̈ there:
/// C = Σ_k g_φk ∂²φ_k/∂ω∂ω' (`ProfileCoordinates.curvature`). ψ's own term, Σ g_ψ ∂²ψ/∂ω∂ω', made H worse, not
/// better: at sleepstudy's sd(Days) = 9.16 (ζ = 2.2) the correlation's entry was 1.5 with it,
/// 20.0 without (and with C, which has none there), against 13.1 by differences of the gradient.
///
/// The PLS problem is the direct path's (a factor) or the iterative path's (the fit's probes,
/// fixed, so that d is a smooth function of ω there too): `ProfileSolver`.
struct ProfileDeviance<Solver: ProfileSolver>: NewtonObjective {
    let pls: Solver
    let terms: [RandomEffectsTerm]
    /// ω with the held components at their values (the free ones are replaced by x's).
    let omega: [Double]
    /// The components of ω that move, and their scales.
    let free: [Int]
    let scale: [Double]
    let lowerBounds: [Double]
    let upperBounds: [Double]
    /// B's θ rows at the last derivatives, which map a step in x to one in θ (`slack`).
    private let lastChain = ChainRule()
    private final class ChainRule { var thetaRows: [Double] = [] }

    /// `pls` must be an ML problem on the fit's cross-products; each evaluation solves it afresh.
    init(_ pls: Solver, omega: [Double], free: [Int], scale: [Double]) {
        self.pls = pls
        terms = pls.crossProducts.terms
        self.omega = omega
        self.free = free
        self.scale = scale
        let joined = ProfileCoordinates.correlatedSDs(terms)
        lowerBounds = free.map { joined[$0] == nil ? 0 : -1 }
        upperBounds = free.map { joined[$0] == nil ? .infinity : 1 }
    }

    struct Evaluation {
        var pls: Solver.Evaluation
        var omega: [Double]
        var theta: [Double]
        var sigma: Double
        var deviance: Double
    }

    /// ω at x.
    func omega(at x: [Double]) -> [Double] {
        var w = omega
        for (a, c) in free.enumerated() { w[c] = x[a] * scale[a] }
        return w
    }

    func evaluate(_ x: [Double]) -> Evaluation? {
        let w = omega(at: x)
        guard let (theta, sigma) = ProfileCoordinates.thetaAndSigma(w, terms: terms), let e = pls.evaluate(theta) else { return nil }
        let n = Double(pls.crossProducts.rows)
        let deviance = pls.logDeterminant(e) + pls.penalizedRSS(e) / (sigma * sigma) + n * log(2 * Double.pi * sigma * sigma)
            - pls.crossProducts.logWeights
        return Evaluation(pls: e, omega: w, theta: theta, sigma: sigma, deviance: deviance)
    }

    func value(_ e: Evaluation) -> Double { e.deviance }

    func derivatives(_ x: [Double], _ e: Evaluation) -> NewtonOptimizer.Derivatives {
        let modes = pls.modes(e.theta, e.pls)
        let (g, b) = chainRule(e, modes: modes)
        let n = omega.count, f = free.count
        let h = pls.averageInformation(e.pls, modes, sigma2: e.sigma * e.sigma)
        var hb = [Double](repeating: 0, count: n * f)
        for a in 0..<f { for k in 0..<n where b[k + a * n] != 0 { for i in 0..<n { hb[i + a * n] += h[i + k * n] * b[k + a * n] } } }
        let curvature = ProfileCoordinates.curvature(e.omega, theta: e.theta, terms: terms, gradient: g)
        var information = [Double](repeating: 0, count: f * f)
        for (c, fc) in free.enumerated() {
            for (a, fa) in free.enumerated() {
                information[a + c * f] = (0..<n).reduce(0.0) { $0 + b[$1 + a * n] * hb[$1 + c * n] }
                    + scale[a] * scale[c] * curvature[fa + fc * n]
            }
        }
        return (gradient(g, b), information)
    }

    func gradient(_ x: [Double], _ e: Evaluation) -> [Double] {
        let (g, b) = chainRule(e, modes: pls.modes(e.theta, e.pls))
        return gradient(g, b)
    }

    /// The PLS problem's: the Monte-Carlo error of the gradient along the step in θ it makes
    /// (σ²'s component is exact), its resolution and its standard errors (on the iterative path).
    func slack(along step: [Double]) -> Double {
        let n = omega.count, m = n - 1, b = lastChain.thetaRows
        guard b.count == m * step.count else { return 0 }
        return pls.slack(along: (0..<m).map { i in step.indices.reduce(0.0) { $0 + b[i + $1 * m] * step[$1] } })
    }
    func resolvableDecrease(_ value: Double) -> Double { pls.resolvableDecrease(value) }
    func isNegligible(step: [Double], information: [Double]) -> Bool { pls.isNegligible(step: step, information: information) }

    /// g_x = B'g_ψ.
    private func gradient(_ g: [Double], _ b: [Double]) -> [Double] {
        let n = omega.count
        return free.indices.map { a in (0..<n).reduce(0.0) { $0 + b[$1 + a * n] * g[$1] } }
    }

    /// g_ψ at an evaluation, and B = J[:, free] S (n × free, column-major).
    private func chainRule(_ e: Evaluation, modes: Solver.Modes) -> (gradient: [Double], b: [Double]) {
        let n = omega.count
        let s2 = e.sigma * e.sigma
        let (logDeterminant, residual) = pls.gradientParts(e.pls, modes)
        let g = zip(logDeterminant, residual).map { $0 + $1 / s2 }
            + [Double(pls.crossProducts.rows) / s2 - pls.penalizedRSS(e.pls) / (s2 * s2)]
        let j = ProfileCoordinates.jacobian(e.omega, terms: terms)
        var b = [Double](repeating: 0, count: n * free.count)
        for (a, c) in free.enumerated() { for i in 0..<n { b[i + a * n] = j[i + c * n] * scale[a] } }
        lastChain.thetaRows = free.indices.flatMap { a in b[(a * n)..<(a * n + n - 1)] }
        return (g, b)
    }
}

