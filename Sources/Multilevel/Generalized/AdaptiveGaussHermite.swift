import Foundation

/// Adaptive Gauss–Hermite quadrature of a GLMM's likelihood, for one scalar random-effects term
/// (lme4's `nAGQ > 1`): the levels' effects are then independent given β, so the integral is a
/// product of one-dimensional integrals, each taken on k nodes centred at the level's
/// conditional mode u_j and scaled by its conditional SD s_j = 1/L_jj:
///
///     deviance = Σ_j d_j(u_j) + log|L|² − 2 Σ_j log Σ_k w_k exp(−½ (d_j(u_j + z_k s_j) − d_j(u_j)) + z_k²/2)
///
/// with d_j(u) = u² + Σ_{rows of j} devres, and (z_k, w_k) the Gauss–Hermite rule for the
/// standard normal density. As lme4's, this deviance is built from deviance residuals, not
/// log-densities, so it differs from the Laplace one by a constant of the data.
enum AdaptiveGaussHermite {
    /// Nodes and weights of the k-point rule for ∫ f(z) φ(z) dz (weights add up to 1), by
    /// Newton's method on the orthonormal Hermite polynomials (Golub–Welsch gives the same).
    static func rule(_ k: Int) -> (nodes: [Double], weights: [Double]) {
        precondition(k >= 1)
        var x = [Double](repeating: 0, count: k), w = [Double](repeating: 0, count: k)
        let n = Double(k)
        var z = 0.0
        for i in 0..<((k + 1) / 2) {
            switch i {
            case 0: z = (2 * n + 1).squareRoot() - 1.85575 * pow(2 * n + 1, -1.0 / 6)
            case 1: z -= 1.14 * pow(n, 0.426) / z
            case 2: z = 1.86 * z - 0.86 * x[0]
            case 3: z = 1.91 * z - 0.91 * x[1]
            default: z = 2 * z - x[i - 2]
            }
            var derivative = 0.0
            for _ in 0..<100 {
                var p1 = pow(Double.pi, -0.25), p2 = 0.0
                for j in 1...k {
                    let p3 = p2
                    p2 = p1
                    p1 = z * (2 / Double(j)).squareRoot() * p2 - ((Double(j) - 1) / Double(j)).squareRoot() * p3
                }
                derivative = (2 * n).squareRoot() * p2
                let previous = z
                z = previous - p1 / derivative
                if abs(z - previous) <= 1e-15 * max(1, abs(z)) { break }
            }
            x[i] = z
            x[k - 1 - i] = -z
            w[i] = 2 / (derivative * derivative)
            w[k - 1 - i] = w[i]
        }
        // e^{−x²} weights → standard normal: z = √2 x, w / √π.
        let nodes = x.reversed().map { $0 * 2.0.squareRoot() }
        let weights = w.reversed().map { $0 / Double.pi.squareRoot() }
        return (nodes.map { abs($0) < 1e-14 ? 0 : $0 }, weights)
    }

    /// The deviance above at the mode `mode` (PIRLS with β given) of `irls`.
    static func deviance(_ mode: PenalizedIRLS.Mode, irls: PenalizedIRLS, nodes k: Int) throws -> Double {
        let rows = irls.rows, u = mode.u, q = u.count, beta = mode.beta
        let base = try rows.levelDevianceResiduals(beta: beta, b: irls.randomEffects(mode.theta, u))
        let d0 = (0..<q).map { u[$0] * u[$0] + base[$0] }
        // The factor is still the mode's: A is diagonal, (A⁻¹)_jj = 1/L_jj².
        let sd = irls.pls.inverseDiagonalBlocks().flatMap { $0 }.map { $0.squareRoot() }
        let (z, w) = rule(k)
        var mult = [Double](repeating: 0, count: q)
        for (node, weight) in zip(z, w) {
            if node == 0 {
                for j in 0..<q { mult[j] += weight }
                continue
            }
            let shifted = (0..<q).map { u[$0] + node * sd[$0] }
            let sums = try rows.levelDevianceResiduals(beta: beta, b: irls.randomEffects(mode.theta, shifted))
            for j in 0..<q {
                let dj = shifted[j] * shifted[j] + sums[j]
                mult[j] += weight * exp(-0.5 * (dj - d0[j]) + 0.5 * node * node)
            }
        }
        var deviance = mode.logDetL2
        for j in 0..<q { deviance += d0[j] - 2 * log(mult[j]) }
        return deviance
    }
}
