import Foundation

/// Denominator degrees of freedom for the fixed effects' t-tests (`--ddf`).
public enum DenominatorDF: String, CaseIterable, Sendable {
    /// No degrees of freedom (lme4's summary: t values without p-values).
    case none
    /// Satterthwaite's, as lmerTest computes them.
    case satterthwaite
}

/// Satterthwaite's degrees of freedom for each β̂_j, as lmerTest's `summary()`:
///
///     ν_j = 2 V_jj² / (g_j' A g_j),
///
/// V = σ² (R_X'R_X)⁻¹ the covariance of β̂, g_j its entry's gradient in the variance parameters
/// φ = (θ, σ), and A = 2 H⁻¹ their asymptotic covariance, H the Hessian of the deviance with σ
/// explicit,
///
///     d(θ, σ) = D(θ) + r²(θ)/σ² + ν log(2πσ²),
///
/// D = log|C| (REML; log|A| for ML), ν = n − p (REML; n for ML), at (θ̂, σ̂). Its pieces: in θ,
/// ∂²D and ∂²r² by central differences of their analytic gradients (`gradientParts`, no
/// differences of the deviance itself, so about 1e-10 relative); across, −2 ∂r²/σ³; in σ,
/// 6r²/σ⁴ − 2ν/σ². ∂V/∂σ = 2V/σ exactly; ∂V/∂θ by the same central differences of (R_X'R_X)⁻¹.
/// Each difference is one factorisation and one selected inverse; the cross-products are all
/// it reads.
enum Satterthwaite {
    /// ν_j for every β̂_j at θ̂; nil where V or A is not defined (a singular H).
    static func degreesOfFreedom(_ pls: PenalizedLeastSquares, theta: [Double]) throws -> [Double] {
        let cp = pls.crossProducts, p = cp.fixedCount, m = theta.count
        let nu = cp.residualDegreesOfFreedom(reml: pls.reml)
        func state(_ t: [Double]) throws -> (gradD: [Double], gradR: [Double], unscaled: [Double], rss: Double) {
            guard let e = pls.evaluate(t) else {
                throw InputError("Satterthwaite's degrees of freedom: the model cannot be evaluated near θ̂ = "
                    + "(\(t.map { String(format: "%.4g", $0) }.joined(separator: ", ")))")
            }
            let parts = pls.gradientParts(e, pls.modes(t, e))
            return (parts.logDeterminant, parts.residual, DenseCholesky.inverseOfCrossProduct(e.r, leading: p + 1, order: p),
                    e.penalizedRSS)
        }
        let center = try state(theta)
        let sigma2 = center.rss / nu, sigma = sigma2.squareRoot()
        // H over (θ, σ), (m + 1)², and ∂(R_X'R_X)⁻¹/∂θ_i.
        var h = [Double](repeating: 0, count: (m + 1) * (m + 1))
        var dUnscaled = [[Double]]()
        for i in 0..<m {
            let step = 1e-5 * max(1, abs(theta[i]))
            var plus = theta, minus = theta
            plus[i] += step
            minus[i] -= step
            let a = try state(plus), b = try state(minus)
            for k in 0..<m {
                h[k + i * (m + 1)] = (a.gradD[k] - b.gradD[k]) / (2 * step) + (a.gradR[k] - b.gradR[k]) / (2 * step) / sigma2
            }
            dUnscaled.append(zip(a.unscaled, b.unscaled).map { ($0 - $1) / (2 * step) })
        }
        _ = pls.evaluate(theta)   // the factor back at θ̂ for whatever follows
        for i in 0..<m {
            for k in 0..<i {
                let mean = (h[k + i * (m + 1)] + h[i + k * (m + 1)]) / 2
                h[k + i * (m + 1)] = mean
                h[i + k * (m + 1)] = mean
            }
            let cross = -2 * center.gradR[i] / (sigma2 * sigma)
            h[i + m * (m + 1)] = cross
            h[m + i * (m + 1)] = cross
        }
        h[m + m * (m + 1)] = 6 * center.rss / (sigma2 * sigma2) - 2 * nu / sigma2
        guard let hInverse = GeneralizedLinearMixedModel.inverse(h, order: m + 1) else {
            throw InputError("Satterthwaite's degrees of freedom: the Hessian of the deviance in (θ, σ) is singular at θ̂ (a boundary fit?)")
        }
        return (0..<p).map { j in
            let vjj = sigma2 * center.unscaled[j + j * p]
            var g = (0..<m).map { sigma2 * dUnscaled[$0][j + j * p] }
            g.append(2 * sigma * center.unscaled[j + j * p])
            var denominator = 0.0
            for a in 0...m { for b in 0...m { denominator += g[a] * 2 * hInverse[a + b * (m + 1)] * g[b] } }
            return 2 * vjj * vjj / denominator
        }
    }
}
