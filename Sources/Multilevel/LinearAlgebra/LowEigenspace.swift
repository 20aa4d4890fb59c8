import CCHOLMOD
import Foundation

/// The few smallest eigenpairs of the preconditioned Â = L⁻¹AL⁻ᵀ (M = LL' the block-Jacobi
/// preconditioner), which the iterative path takes out of its stochastic estimates.
///
/// Why: when terms are crossed, Z'Z has null vectors (a constant added to every level of one
/// intercept term and taken from another leaves ZΛu unchanged), so A = I there, while M holds
/// each level's θ²n_l + 1: Â has a few eigenvalues near 1/(θ²n̄), far below the rest (crossed-mm
/// at 10^5 rows: two, at 0.013 and 0.03). Hutchinson's estimator of tr f(Â) has the variance
/// 2 Σ_{i≠j} f(Â)_ij², and a few eigenvectors with |log λ| ≈ 4 make most of it. Their part is
/// computed exactly instead: with U the Ritz vectors and P = I − UU',
///
///     tr f(Â) = Σ_i f(λ_i) + tr(P f(Â) P),
///
/// the second estimated on projected probes Pr. The pairs come from one Lanczos run with full
/// reorthogonalisation, started from a fixed vector, so every rank finds the same; only Ritz
/// pairs below `threshold` whose residual ‖ÂU − Uλ‖ = β_k|s_ki| is below `residualTolerance`
/// (relative to λ) are kept. The run stops (checked every 10 steps from 20) once every Ritz
/// value below the threshold has converged.
struct LowEigenspace {
    /// λ_i, and U row-interleaved (q × count).
    let values: [Double]
    let vectors: [Double]
    var count: Int { values.count }

    static let empty = LowEigenspace(values: [], vectors: [])
    static let threshold = 0.5
    static let residualTolerance = 1e-6

    /// Lanczos on Â for at most `steps` steps from a vector of signs seeded by `seed`.
    static func compute(_ a: SystemOperator, preconditioner m: BlockJacobiPreconditioner, steps: Int, seed: UInt64) -> LowEigenspace {
        let q = a.dimension
        guard q > 2 * steps else { return .empty }
        var random = Xoshiro256(seed: seed)
        var v = (0..<q).map { _ in random.next() & 1 == 1 ? 1.0 : -1.0 }
        let norm0 = Double(q).squareRoot()
        for i in 0..<q { v[i] /= norm0 }
        var basis: [[Double]] = [v]
        var alphas: [Double] = [], betas: [Double] = []
        func dot(_ x: [Double], _ y: [Double]) -> Double {
            var s = 0.0
            for i in 0..<q { s += x[i] * y[i] }
            return s
        }
        // T = S diag(θ) S' (dstev); pair i's residual is β_last |S[last, i]|. Kept: the pairs
        // below the threshold whose residual is within tolerance.
        func ritzPairs() -> (values: [Double], s: [Double], kept: [Int])? {
            var n = Int32(alphas.count)
            var d = alphas, e = Array(betas.prefix(alphas.count - 1))
            if e.isEmpty { e = [0] }
            var s = [Double](repeating: 0, count: Int(n) * Int(n))
            var work = [Double](repeating: 0, count: max(1, 2 * Int(n) - 2))
            var info: Int32 = 0, jobz = Int8(UInt8(ascii: "V")), ldz = n
            dstev_(&jobz, &n, &d, &e, &s, &ldz, &work, &info)
            guard info == 0 else { return nil }
            let k = Int(n), last = betas.last ?? 0
            let kept = (0..<k).filter { i in
                d[i] > 0 && d[i] < threshold && last * abs(s[(k - 1) + i * k]) <= residualTolerance * d[i]
            }
            return (d, s, kept)
        }
        var pairs: (values: [Double], s: [Double], kept: [Int])?
        for j in 0..<steps {
            var w = basis[j]
            w.withUnsafeMutableBufferPointer { m.apply(.inverseTransposeLower, to: $0.baseAddress!, vectors: 1) }
            w = a.apply(w, vectors: 1)
            w.withUnsafeMutableBufferPointer { m.apply(.inverseLower, to: $0.baseAddress!, vectors: 1) }
            let alpha = dot(basis[j], w)
            alphas.append(alpha)
            // Full reorthogonalisation, twice (Parlett's "twice is enough").
            for _ in 0..<2 {
                for b in basis {
                    let c = dot(b, w)
                    for i in 0..<q { w[i] -= c * b[i] }
                }
            }
            let beta = dot(w, w).squareRoot()
            betas.append(beta)
            // Every 10 steps from 20: stop once every Ritz value below the threshold has converged.
            if (j + 1) % 10 == 0 && j + 1 >= 20, let p = ritzPairs() {
                pairs = p
                let below = p.values.filter { $0 > 0 && $0 < threshold }.count
                if below == p.kept.count { break }
            }
            guard beta > 1e-12 * max(1, abs(alpha)), j + 1 < steps else { break }
            basis.append(w.map { $0 / beta })
        }
        if pairs == nil || pairs!.values.count != alphas.count { pairs = ritzPairs() }
        guard let (_, s, kept) = pairs else { return .empty }
        let k = alphas.count
        var vectors = [Double](repeating: 0, count: q * kept.count)
        for (c, i) in kept.enumerated() {
            for (j, b) in basis.prefix(k).enumerated() {
                let sji = s[j + i * k]
                for x in 0..<q { vectors[x * kept.count + c] += sji * b[x] }
            }
        }
        return LowEigenspace(values: kept.map { pairs!.values[$0] }, vectors: vectors)
    }

    /// v ← (I − UU')v for k row-interleaved vectors.
    func project(_ v: inout [Double], vectors k: Int) {
        let c = count
        guard c > 0 else { return }
        let q = v.count / max(k, 1)
        var coefficients = [Double](repeating: 0, count: c * k)
        for i in 0..<q { for a in 0..<c {
            let u = vectors[i * c + a]
            for j in 0..<k { coefficients[a * k + j] += u * v[i * k + j] }
        } }
        for i in 0..<q { for a in 0..<c {
            let u = vectors[i * c + a]
            for j in 0..<k { v[i * k + j] -= u * coefficients[a * k + j] }
        } }
    }
}
