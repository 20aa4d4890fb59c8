import Foundation

/// Denominator degrees of freedom for the fixed effects' tests (`--ddf`).
public enum DenominatorDF: String, CaseIterable, Sendable {
    /// No degrees of freedom (lme4's summary: t values without p-values).
    case none
    /// Satterthwaite's, as lmerTest computes them.
    case satterthwaite
    /// Kenward and Roger's, as pbkrtest computes them (REML fits only): an adjusted covariance
    /// of β̂ and scaled F statistics.
    case kenwardRoger = "kenward-roger"

    /// The name lmerTest prints.
    var title: String { self == .kenwardRoger ? "Kenward-Roger" : "Satterthwaite" }
}

/// The fixed effects' tests with denominator degrees of freedom: a t-test of each β̂ (lmerTest's
/// `summary()`) and an F-test of each fixed-effect term (lmerTest's `anova(type = 3)`).
public struct FixedEffectTests: Sendable {
    public let method: DenominatorDF
    /// Per β̂: the standard error of the t-test (Kenward–Roger's adjusted one; otherwise the
    /// fit's), its degrees of freedom, t and two-sided p.
    public let standardErrors: [Double]
    public let df: [Double]
    public let t: [Double]
    public let p: [Double]
    /// Per fixed-effect term, in formula order (the intercept is not tested); the terms without
    /// a test (`TypeThreeContrasts`) are named in `untestedTerms`.
    public internal(set) var terms: [TermTest] = []
    public internal(set) var untestedTerms: [String] = []

    /// The type-3 F-test of one term: H0 Lβ = 0 for its contrast rows L.
    public struct TermTest: Sendable {
        public let term: String
        public let numeratorDF: Int
        public let denominatorDF: Double
        public let f: Double
        public let p: Double
        /// lmerTest's "Mean Sq": the unscaled F times σ̂² (Sum Sq is numeratorDF times it).
        public let meanSquare: Double
    }

    /// t-tests of every β̂ by `method`.
    init(method: DenominatorDF, beta: [Double], tests: ContrastTests) {
        self.method = method
        let p = beta.count
        var se: [Double] = [], df: [Double] = []
        for j in 0..<p {
            var l = [Double](repeating: 0, count: p)
            l[j] = 1
            let test = tests.tTest(l)
            se.append(test.standardError)
            df.append(test.df)
        }
        standardErrors = se
        self.df = df
        t = zip(beta, se).map { $0 / $1 }
        self.p = zip(t, df).map { StudentTDistribution.twoSidedTail($0, df: $1) }
    }
}

/// A method's tests of linear contrasts l'β and Lβ of the fixed effects.
protocol ContrastTests: Sendable {
    /// The t-test of l'β = 0: its standard error and denominator degrees of freedom.
    func tTest(_ l: [Double]) -> (standardError: Double, df: Double)
    /// The F-test of Lβ = 0 (L: rows of length p): numerator and denominator df, F; nil when
    /// Var(Lβ̂) has rank 0.
    func fTest(_ rows: [[Double]], beta: [Double]) -> (numeratorDF: Int, denominatorDF: Double, f: Double, unscaledF: Double)?
}

extension ContrastTests {
    /// The F-test of a term with contrast rows `rows` (from `TypeThreeContrasts`).
    func termTest(_ term: String, rows: [[Double]], beta: [Double], sigma: Double) -> FixedEffectTests.TermTest? {
        fTest(rows, beta: beta).map {
            FixedEffectTests.TermTest(term: term, numeratorDF: $0.numeratorDF, denominatorDF: $0.denominatorDF, f: $0.f,
                                      p: FDistribution.upperTail($0.f, numeratorDF: Double($0.numeratorDF), denominatorDF: $0.denominatorDF),
                                      meanSquare: $0.unscaledF * sigma * sigma)
        }
    }
}

/// How Var(β̂) = V depends on the variance parameters φ = (θ, σ): V, its Jacobian ∂V/∂φ_i and
/// A = 2H⁻¹, the asymptotic covariance of φ̂ (lmerTest's `vcov_beta`, `Jac_list` and
/// `vcov_varpar`). Satterthwaite's tests are made of these alone.
struct SatterthwaiteTests: ContrastTests {
    let p: Int
    let covariance: [Double]
    let jacobian: [[Double]]
    let parameterCovariance: [Double]

    /// ν = 2 (l'Vl)² / (g'Ag), g_i = l'(∂V/∂φ_i)l.
    func tTest(_ l: [Double]) -> (standardError: Double, df: Double) {
        let variance = Dense.bilinear(l, covariance, l, p)
        let g = jacobian.map { Dense.bilinear(l, $0, l, p) }
        let denominator = Dense.bilinear(g, parameterCovariance, g, g.count)
        return (variance.squareRoot(), 2 * variance * variance / denominator)
    }

    /// lmerTest's `contestMD`: Var(Lβ̂) = PDP', F the mean of the q independent t² of the rows
    /// of P'L (q = rank), each with its own ν_m, and the F's ddf 2E/(E − q), E = Σ ν_m/(ν_m − 2)
    /// (2 if any ν_m ≤ 2; their mean if they agree within 1e-8).
    func fTest(_ rows: [[Double]], beta: [Double]) -> (numeratorDF: Int, denominatorDF: Double, f: Double, unscaledF: Double)? {
        let r = rows.count
        var vl = [Double](repeating: 0, count: r * r)
        for a in 0..<r { for b in 0..<r { vl[a + b * r] = Dense.bilinear(rows[a], covariance, rows[b], p) } }
        guard let (d, vectors) = Dense.symmetricEigen(vl, r), let first = d.first else { return nil }
        let tolerance = max(Double.ulpOfOne.squareRoot() * first, 0)
        let q = d.filter { $0 > tolerance }.count
        guard q > 0 else { return nil }
        var f = 0.0, nu: [Double] = []
        for m in 0..<q {
            let l = (0..<p).map { i in (0..<r).reduce(0.0) { $0 + vectors[$1 + m * r] * rows[$1][i] } }
            let estimate = zip(l, beta).reduce(0.0) { $0 + $1.0 * $1.1 }
            f += estimate * estimate / d[m]
            nu.append(tTest(l).df)
        }
        f /= Double(q)
        let ddf: Double
        if q == 1 {
            ddf = nu[0]
        } else if zip(nu, nu.dropFirst()).allSatisfy({ abs($0 - $1) < 1e-8 }) {
            ddf = nu.reduce(0, +) / Double(q)
        } else if nu.contains(where: { $0 <= 2 }) {
            ddf = 2
        } else {
            let e = nu.reduce(0.0) { $0 + $1 / ($1 - 2) }
            ddf = 2 * e / (e - Double(q))
        }
        return (q, ddf, f, f)
    }
}

/// Satterthwaite's degrees of freedom for l'β̂, as lmerTest's `summary()` and `anova()`:
///
///     ν = 2 (l'Vl)² / (g'Ag),
///
/// V = σ² (R_X'R_X)⁻¹ the covariance of β̂, g the gradient of l'Vl in the variance parameters
/// φ = (θ, σ), and A = 2 H⁻¹ their asymptotic covariance, H the Hessian of the deviance with σ
/// explicit,
///
///     d(θ, σ) = D(θ) + r²(θ)/σ² + ν log(2πσ²),
///
/// D = log|C| (REML; log|A| for ML), ν = n − p (REML; n for ML), at (θ̂, σ̂). Its pieces: in θ,
/// ∂²D and ∂²r² by forward differences of their analytic gradients (`gradientParts`; no
/// differences of the deviance itself); across, −2 ∂r²/σ³; in σ, 6r²/σ⁴ − 2ν/σ². ∂V/∂σ = 2V/σ
/// exactly; ∂V/∂θ by the same forward differences of (R_X'R_X)⁻¹.
///
/// Cost: the fit leaves the gradient's parts at θ̂ with its last evaluation, so the differences
/// add m points, each one factorisation and one selected inverse, while central ones would add
/// 2m (at crossed 10^6, 2m points took longer than the whole fit). Forward steps go up, away from
/// the lower bounds of θ's diagonal entries. The step, h_i = 3·10⁻⁷ max(1, |θ_i|), balances the
/// truncation error (∝ h; 1e-5 relative in df at h = 10⁻⁶) against the rounding of the gradient's
/// parts (∝ 1/h; 1e-5 at 3·10⁻⁸): measured on sleepstudy, Penicillin, Exam and InstEval, the df
/// are then within 7e-6 of lmerTest's, and within 4e-6 of central differences at crossed 10^6.
/// The cross-products are all it reads.
enum Satterthwaite {
    static let relativeStep = 3e-7

    /// V, ∂V/∂φ and A at θ̂. `pls` is left at the last point differenced: the fit reads nothing
    /// more from it.
    static func tests(_ pls: PenalizedLeastSquares, theta: [Double]) throws -> SatterthwaiteTests {
        let cp = pls.crossProducts, p = cp.fixedCount, m = theta.count
        let nu = cp.residualDegreesOfFreedom(reml: pls.reml)
        func state(_ t: [Double]) throws -> (gradD: [Double], gradR: [Double], unscaled: [Double], rss: Double) {
            guard let e = pls.evaluate(t) else {
                throw InputError("Satterthwaite's degrees of freedom: the model cannot be evaluated near θ̂ = "
                    + "(\(t.map { String(format: "%.4g", $0) }.joined(separator: ", ")))")
            }
            let parts = pls.gradientParts(t, e)
            return (parts.logDeterminant, parts.residual, DenseCholesky.inverseOfCrossProduct(e.r, leading: p + 1, order: p),
                    e.penalizedRSS)
        }
        let center = try state(theta)
        let sigma2 = center.rss / nu, sigma = sigma2.squareRoot()
        // H over (θ, σ), (m + 1)², and ∂(R_X'R_X)⁻¹/∂θ_i.
        var h = [Double](repeating: 0, count: (m + 1) * (m + 1))
        var jacobian = [[Double]]()
        for i in 0..<m {
            let step = relativeStep * max(1, abs(theta[i]))
            var plus = theta
            plus[i] += step
            let a = try state(plus)
            for k in 0..<m {
                h[k + i * (m + 1)] = (a.gradD[k] - center.gradD[k]) / step + (a.gradR[k] - center.gradR[k]) / step / sigma2
            }
            jacobian.append(zip(a.unscaled, center.unscaled).map { sigma2 * ($0 - $1) / step })
        }
        jacobian.append(center.unscaled.map { 2 * sigma * $0 })
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
        guard let hInverse = Dense.inverse(h, order: m + 1) else {
            throw InputError("Satterthwaite's degrees of freedom: the Hessian of the deviance in (θ, σ) is singular at θ̂ (a boundary fit?)")
        }
        return SatterthwaiteTests(p: p, covariance: center.unscaled.map { sigma2 * $0 }, jacobian: jacobian,
                                  parameterCovariance: hInverse.map { 2 * $0 })
    }
}
