/// A start for θ by the method of moments, from the cross-products alone.
///
/// lme4 starts every fit at T_k = I (each random effect's SD equal to σ, no correlation). On a
/// large crossed fit that start is far from θ̂, and Newton's first steps from it overshoot
/// (crossed 10^6: the first step from θ = (1, 0, 1, 1) went to (0.66, 1.17, 0.1, 0.1) and took
/// three halvings). The moments below cost one pass over Z'Z's diagonal blocks.
///
/// For each term k, with r the least-squares residuals of y on X:
/// - each level ℓ's own least-squares effects b_ℓ = (Z_ℓ'Z_ℓ)⁻¹Z_ℓ'r (levels whose Z_ℓ'Z_ℓ is
///   singular are left out);
/// - the residual variance within the levels, s_k² = (r'r − Σ_ℓ b_ℓ'Z_ℓ'r)/(n − p − Σ_ℓ p_k);
/// - Swamy's estimator Σ̂_k = mean(b_ℓb_ℓ') − s_k² mean((Z_ℓ'Z_ℓ)⁻¹), the covariance of the
///   b_ℓ less their sampling variance.
///
/// σ² is taken as the least s_k² (each s_k² also holds the variance of the other terms), and T_k
/// as the Cholesky factor of Σ̂_k/σ², with its diagonal kept in [0.01, 100] and its correlations
/// shrunk until it is positive definite. A term the moments cannot estimate keeps lme4's start.
enum StartingValues {
    static func moments(_ cp: CrossProducts, factor: RelativeCovarianceFactor) -> [Double] {
        var theta = factor.initialTheta
        let p = cp.fixedCount, p1 = p + 1, q = cp.randomEffectsCount
        guard let r = DenseCholesky.upper(cp.xyxy, order: p1) else { return theta }
        let beta = DenseCholesky.solveUpper(r, leading: p1, order: p, Array(r[(p * p1)..<(p * p1 + p)]))
        let rss = r[p1 * p1 - 1] * r[p1 * p1 - 1]
        var zr = Array(cp.zxy[(p * q)..<(p1 * q)])
        for j in 0..<p where beta[j] != 0 { for i in 0..<q { zr[i] -= cp.zxy[i + j * q] * beta[j] } }

        var estimates: [(covariance: [Double], within: Double)?] = []
        for term in cp.terms {
            let d = term.dimension
            var meanOuter = [Double](repeating: 0, count: d * d), meanInverse = meanOuter
            var between = 0.0, used = 0
            for level in 0..<term.levels.count {
                let start = term.offset + level * d
                // The level's diagonal block: the last entries of each of its columns (rows ascending).
                var block = [Double](repeating: 0, count: d * d)
                for j in 0..<d {
                    let c = start + j, end = cp.zzColumnStarts[c + 1]
                    for e in stride(from: end - 1, through: cp.zzColumnStarts[c], by: -1) {
                        let row = cp.zzRowIndices[e]
                        guard row >= start else { break }
                        block[(row - start) + j * d] = cp.zzValues[e]
                        block[j + (row - start) * d] = cp.zzValues[e]
                    }
                }
                guard let rl = DenseCholesky.upper(block, order: d) else { continue }
                let g = Array(zr[start..<(start + d)])
                let b = DenseCholesky.solveUpper(rl, leading: d, order: d, DenseCholesky.solveUpperTransposed(rl, leading: d, order: d, g))
                let inverse = DenseCholesky.inverseOfCrossProduct(rl, leading: d, order: d)
                for i in 0..<d {
                    between += b[i] * g[i]
                    for j in 0..<d {
                        meanOuter[i + j * d] += b[i] * b[j]
                        meanInverse[i + j * d] += inverse[i + j * d]
                    }
                }
                used += 1
            }
            let df = Double(cp.rows - p - used * d)
            guard used > 1, df > 0 else { estimates.append(nil); continue }
            let within = (rss - between) / df
            guard within > 0, within.isFinite else { estimates.append(nil); continue }
            let covariance = (0..<(d * d)).map { (meanOuter[$0] - within * meanInverse[$0]) / Double(used) }
            estimates.append(covariance.allSatisfy(\.isFinite) ? (covariance, within) : nil)
        }
        guard let sigma2 = estimates.compactMap({ $0?.within }).min() else { return theta }

        var next = 0
        for (k, term) in cp.terms.enumerated() {
            let d = term.dimension
            defer { next += term.thetaCount }
            guard let estimate = estimates[k] else { continue }
            var relative = estimate.covariance.map { $0 / sigma2 }
            for i in 0..<d { relative[i + i * d] = min(max(relative[i + i * d], 1e-4), 1e4) }
            // Shrink the correlations until the matrix is positive definite (at 0 it is).
            var l: [Double]?
            for shrink in [1.0, 0.9, 0.7, 0.5, 0.25, 0] {
                var s = relative
                for i in 0..<d { for j in 0..<d where i != j { s[i + j * d] *= shrink } }
                if let u = DenseCholesky.upper(s, order: d) { l = u; break }
            }
            guard let u = l else { continue }
            // θ holds T_k = R' (lower) column by column.
            var i = next
            for col in 0..<d { for row in col..<d { theta[i] = u[col + row * d]; i += 1 } }
        }
        return theta
    }
}
