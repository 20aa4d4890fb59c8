/// A start for θ by the method of moments, from the cross-products alone.
///
/// lme4 starts every fit at T_k = I (each random effect's SD equal to σ, no correlation). On a
/// large crossed fit that start is far from θ̂, and Newton's first steps from it overshoot
/// (crossed 10^6: the first step from θ = (1, 0, 1, 1) went to (0.66, 1.17, 0.1, 0.1) and took
/// three halvings). The moments below cost one pass over Z'Z's diagonal blocks.
///
/// With r the least-squares residuals of y on X, g_ℓ = Z_ℓ'r and G_ℓ = Z_ℓ'Z_ℓ for level ℓ of
/// term k, E[g_ℓ g_ℓ'] is about G_ℓ Σ_k G_ℓ + σ² G_ℓ, and E[r'r] about (n − p) σ² + Σ_k tr(Σ_k Σ_ℓ G_ℓ).
/// Summed over the levels, the first is linear in Σ_k:
///
///     Σ_ℓ (G_ℓ ⊗ G_ℓ) vec Σ_k = vec(Σ_ℓ g_ℓ g_ℓ') − σ² vec(Σ_ℓ G_ℓ),
///
/// so Σ_k = A_k − σ² B_k (a d_k² × d_k² solve), and the second then gives σ² =
/// (r'r − Σ_k tr(A_k T_k)) / (n − p − Σ_k tr(B_k T_k)), T_k = Σ_ℓ G_ℓ, kept at least 1/20 of
/// r'r/(n − p). The sums weigh each level by its information, so a school of two pupils, whose
/// own slope could be anything, counts for little (the unweighted per-level regressions of
/// Swamy's estimator started exam's random slopes at θ (2.74, 3.80, 2.95) against θ̂ (0.41,
/// 0.08, 0.14)); and σ² comes from the total, not from the variance within a term's levels, which
/// holds the variance of the terms crossed with it (penicillin's plates got θ 0.24 from it
/// against θ̂ 1.54). T_k is the Cholesky factor of Σ_k/σ², its diagonal kept in [0.01, 100] and
/// its correlations shrunk until it is positive definite. A term the moments cannot estimate
/// keeps lme4's start. Nested terms are not separated: the sums of an outer term's levels hold
/// its inner terms' effects, so its start is too large (pastes' batches), which costs Newton
/// little there (as many iterations as from lme4's start).
enum StartingValues {
    static func moments(_ cp: CrossProducts, factor: RelativeCovarianceFactor) -> [Double] {
        var theta = factor.initialTheta
        let p = cp.fixedCount, p1 = p + 1, q = cp.randomEffectsCount
        guard let r = DenseCholesky.upper(cp.xyxy, order: p1) else { return theta }
        let beta = DenseCholesky.solveUpper(r, leading: p1, order: p, Array(r[(p * p1)..<(p * p1 + p)]))
        let rss = r[p1 * p1 - 1] * r[p1 * p1 - 1]
        var zr = Array(cp.zxy[(p * q)..<(p1 * q)])
        for j in 0..<p where beta[j] != 0 { for i in 0..<q { zr[i] -= cp.zxy[i + j * q] * beta[j] } }

        // Per term: A_k, B_k (Σ_k = A_k − σ² B_k) and T_k, d × d column-major; nil where the
        // levels do not determine Σ_k.
        var moments: [(a: [Double], b: [Double], t: [Double])?] = []
        for term in cp.terms {
            let d = term.dimension, d2 = d * d
            var outer = [Double](repeating: 0, count: d2), total = outer
            var kronecker = [Double](repeating: 0, count: d2 * d2)   // Σ_ℓ G_ℓ ⊗ G_ℓ, (i + j d, k + l d) ↔ G[i,k] G[j,l]
            for level in 0..<term.levels.count {
                let start = term.offset + level * d
                // The level's diagonal block: the last entries of each of its columns (rows ascending).
                var block = [Double](repeating: 0, count: d2)
                for j in 0..<d {
                    let c = start + j, end = cp.zzColumnStarts[c + 1]
                    for e in stride(from: end - 1, through: cp.zzColumnStarts[c], by: -1) {
                        let row = Int(cp.zzRowIndices[e])
                        guard row >= start else { break }
                        block[(row - start) + j * d] = cp.zzValues[e]
                        block[j + (row - start) * d] = cp.zzValues[e]
                    }
                }
                for j in 0..<d {
                    for i in 0..<d {
                        outer[i + j * d] += zr[start + i] * zr[start + j]
                        total[i + j * d] += block[i + j * d]
                    }
                }
                for l in 0..<d { for k in 0..<d { for j in 0..<d { for i in 0..<d {
                    kronecker[(i + j * d) + (k + l * d) * d2] += block[i + k * d] * block[j + l * d]
                } } } }
            }
            guard let f = DenseCholesky.upper(kronecker, order: d2) else { moments.append(nil); continue }
            func solve(_ v: [Double]) -> [Double] {
                DenseCholesky.solveUpper(f, leading: d2, order: d2, DenseCholesky.solveUpperTransposed(f, leading: d2, order: d2, v))
            }
            let a = solve(outer), b = solve(total)
            guard a.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else { moments.append(nil); continue }
            moments.append((a, b, total))
        }
        func trace(_ x: [Double], _ y: [Double]) -> Double { x.indices.reduce(0) { $0 + x[$1] * y[$1] } }   // tr(XY), Y symmetric
        let known = moments.compactMap { $0 }
        let residualVariance = rss / Double(cp.rows - p)
        guard !known.isEmpty, residualVariance > 0, residualVariance.isFinite else { return theta }
        let numerator = rss - known.reduce(0) { $0 + trace($1.a, $1.t) }
        let denominator = Double(cp.rows - p) - known.reduce(0) { $0 + trace($1.b, $1.t) }
        var sigma2 = residualVariance / 20
        if denominator > 0 { sigma2 = max(sigma2, numerator / denominator) }
        guard sigma2.isFinite else { return theta }

        var next = 0
        for (k, term) in cp.terms.enumerated() {
            let d = term.dimension
            defer { next += term.thetaCount }
            guard let moment = moments[k] else { continue }
            // Σ_k / σ², symmetrised (the solve keeps its symmetry only to rounding).
            var relative = [Double](repeating: 0, count: d * d)
            for j in 0..<d { for i in 0..<d {
                let s = (moment.a[i + j * d] + moment.a[j + i * d]) / 2 - sigma2 * (moment.b[i + j * d] + moment.b[j + i * d]) / 2
                relative[i + j * d] = s / sigma2
            } }
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
