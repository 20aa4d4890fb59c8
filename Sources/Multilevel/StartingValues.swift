/// A start for θ by the method of moments, from the cross-products alone.
///
/// lme4 starts every fit at T_k = I (each random effect's SD equal to σ, no correlation). On a
/// large crossed fit that start is far from θ̂, and Newton's first steps from it overshoot
/// (crossed 10^6: the first step from θ = (1, 0, 1, 1) went to (0.66, 1.17, 0.1, 0.1) and took
/// three halvings). The moments below cost one pass over Z'Z's diagonal blocks.
///
/// For each term k, with r the least-squares residuals of y on X, each level ℓ's own
/// least-squares effects b_ℓ = (Z_ℓ'Z_ℓ)⁻¹Z_ℓ'r (levels whose Z_ℓ'Z_ℓ is singular are left out)
/// have covariance about Σ_k + σ²(Z_ℓ'Z_ℓ)⁻¹, so (Swamy's estimator)
///
///     Σ̂_k = B_k − σ² V_k,   B_k = mean(b_ℓ b_ℓ'),   V_k = mean((Z_ℓ'Z_ℓ)⁻¹),
///
/// and the residual variance r'r/(n − p) is about σ² + Σ_k tr(Σ_k M_k), M_k = Σ_ℓ Z_ℓ'Z_ℓ / n,
/// which gives σ² = (r'r/(n − p) − Σ_k tr(B_k M_k)) / (1 − Σ_k tr(V_k M_k)), kept at least 1/20
/// of r'r/(n − p). (The variance within each term's levels is no estimate of σ²: it holds the
/// variance of the terms crossed with k, and penicillin's plates got θ 0.24 from it against
/// θ̂ 1.54.) T_k is the Cholesky factor of Σ̂_k/σ², its diagonal kept in [0.01, 100] and its
/// correlations shrunk until it is positive definite. A term the moments cannot estimate keeps
/// lme4's start. Nested terms are not separated: the level means of an outer term hold its inner
/// terms' effects, so its start is too large (pastes' batches: θ 2.77 against θ̂ 1.56), which
/// costs Newton nothing there (4 iterations from either start).
enum StartingValues {
    static func moments(_ cp: CrossProducts, factor: RelativeCovarianceFactor) -> [Double] {
        var theta = factor.initialTheta
        let p = cp.fixedCount, p1 = p + 1, q = cp.randomEffectsCount
        guard let r = DenseCholesky.upper(cp.xyxy, order: p1) else { return theta }
        let beta = DenseCholesky.solveUpper(r, leading: p1, order: p, Array(r[(p * p1)..<(p * p1 + p)]))
        let rss = r[p1 * p1 - 1] * r[p1 * p1 - 1]
        var zr = Array(cp.zxy[(p * q)..<(p1 * q)])
        for j in 0..<p where beta[j] != 0 { for i in 0..<q { zr[i] -= cp.zxy[i + j * q] * beta[j] } }

        // Per term: B_k, V_k and M_k (d × d, column-major), nil where no two levels can be estimated.
        var moments: [(b: [Double], v: [Double], m: [Double])?] = []
        for term in cp.terms {
            let d = term.dimension
            var outer = [Double](repeating: 0, count: d * d), inverses = outer, second = outer
            var used = 0
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
                for i in 0..<(d * d) { second[i] += block[i] }
                guard let rl = DenseCholesky.upper(block, order: d) else { continue }
                let g = Array(zr[start..<(start + d)])
                let b = DenseCholesky.solveUpper(rl, leading: d, order: d, DenseCholesky.solveUpperTransposed(rl, leading: d, order: d, g))
                let inverse = DenseCholesky.inverseOfCrossProduct(rl, leading: d, order: d)
                for i in 0..<d { for j in 0..<d { outer[i + j * d] += b[i] * b[j]; inverses[i + j * d] += inverse[i + j * d] } }
                used += 1
            }
            guard used > 1 else { moments.append(nil); continue }
            let m = Double(used), n = Double(cp.rows)
            moments.append((outer.map { $0 / m }, inverses.map { $0 / m }, second.map { $0 / n }))
        }
        func trace(_ a: [Double], _ b: [Double]) -> Double { a.indices.reduce(0) { $0 + a[$1] * b[$1] } }   // tr(AB), B symmetric
        let total = rss / Double(cp.rows - p)
        let explained = moments.reduce(0.0) { $0 + ($1.map { trace($0.b, $0.m) } ?? 0) }
        let sampling = moments.reduce(0.0) { $0 + ($1.map { trace($0.v, $0.m) } ?? 0) }
        guard total > 0, total.isFinite, moments.contains(where: { $0 != nil }) else { return theta }
        var sigma2 = total / 20
        if sampling < 0.95 { sigma2 = max(sigma2, (total - explained) / (1 - sampling)) }
        guard sigma2.isFinite else { return theta }

        var next = 0
        for (k, term) in cp.terms.enumerated() {
            let d = term.dimension
            defer { next += term.thetaCount }
            guard let moment = moments[k] else { continue }
            var relative = moment.b.indices.map { (moment.b[$0] - sigma2 * moment.v[$0]) / sigma2 }
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
