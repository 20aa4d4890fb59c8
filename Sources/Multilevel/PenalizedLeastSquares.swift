import Foundation

/// The penalised least-squares problem for one θ, and the profiled deviance it gives.
///
/// For θ: factor P(Λ'Z'ZΛ + I)P' = LL' (`BlockedCholesky` when the first term's levels are
/// independent and the rest is dense, else CHOLMOD; the pattern is analysed once), then
/// [R_ZX c_u] = L⁻¹PΛ'[Z'X Z'y], and the dense Cholesky of
/// [X y]'[X y] − [R_ZX c_u]'[R_ZX c_u] = R'R gives R_X, c_β and r (its last diagonal entry).
///
///     ML:   log|L|² + n (1 + log(2π r²/n))
///     REML: log|L|² + log|R_X|² + (n−p)(1 + log(2π r²/(n−p)))
final class PenalizedLeastSquares {
    private(set) var crossProducts: CrossProducts
    let factor: RelativeCovarianceFactor
    let reml: Bool
    let cholesky: SymmetricFactorization

    /// The factorisation in use: the blocked path or CHOLMOD with its ordering (`auto` resolved).
    let factorization: Factorization

    /// With the `natural` ordering, the blocked factorisation is used where it applies; with
    /// `auto`, the cheapest candidate by the symbolic analysis (`FactorizationChoice`). Throws,
    /// before allocating the factor, when its predicted size exceeds `memoryLimit`
    /// (`needsInverse`: the optimiser's gradient adds the selected inverse).
    init(_ crossProducts: CrossProducts, reml: Bool, ordering: FillReducingOrdering,
         schur: BlockedCholesky.Formation = .automatic, memoryLimit: MemoryLimit? = nil, needsInverse: Bool = true,
         ranked: FactorizationChoice.Ranking? = nil, log: ((String) -> Void)? = nil) throws {
        self.crossProducts = crossProducts
        self.factor = RelativeCovarianceFactor(terms: crossProducts.terms)
        self.reml = reml
        (cholesky, factorization) = try FactorizationChoice.make(crossProducts, ordering: ordering, schur: schur,
                                                                 limit: memoryLimit, needsInverse: needsInverse,
                                                                 ranked: ranked, log: log)
    }

    /// A factorisation already chosen (refits: bootstrap replicates, profile points, conditional variances).
    init(_ crossProducts: CrossProducts, reml: Bool, factorization: Factorization) throws {
        self.crossProducts = crossProducts
        self.factor = RelativeCovarianceFactor(terms: crossProducts.terms)
        self.reml = reml
        self.factorization = factorization
        switch factorization {
        case .blocked:
            guard let blocked = BlockedCholesky(crossProducts, checked: false) else {
                preconditionFailure("the blocked factorisation was chosen for cross-products it does not apply to")
            }
            cholesky = blocked
        case .cholmod(let ordering):
            cholesky = try SparseCholesky(dimension: crossProducts.randomEffectsCount,
                                          columnStarts: crossProducts.zzColumnStarts,
                                          rowIndices: crossProducts.zzRowIndices, ordering: ordering)
        }
    }

    /// Refits to other cross-products on the same pattern of Z'Z (a bootstrap replicate's
    /// response, β fixed in a profile, a GLMM's reweighted rows), so the analysis still holds.
    func replaceCrossProducts(with cp: CrossProducts) {
        precondition(cp.zzColumnStarts == crossProducts.zzColumnStarts && cp.fixedCount == crossProducts.fixedCount)
        crossProducts = cp
        last = nil
    }

    /// β̂ = R_X⁻¹ c_β from an evaluation.
    func fixedEffects(_ e: Evaluation) -> [Double] {
        let p = crossProducts.fixedCount, p1 = p + 1
        return DenseCholesky.solveUpper(e.r, leading: p1, order: p, (0..<p).map { e.r[$0 + p * p1] })
    }

    /// σ̂ = √(r² / (n − p)) (REML) or √(r² / n) (ML).
    func residualSD(_ e: Evaluation) -> Double {
        (e.penalizedRSS / crossProducts.residualDegreesOfFreedom(reml: reml)).squareRoot()
    }

    /// Whether the dense-Schur-complement factorisation is in use (else CHOLMOD's).
    var isBlocked: Bool { cholesky is BlockedCholesky }

    /// The intermediate results for one θ.
    struct Evaluation {
        var logDetL2: Double
        var logDetRX2: Double
        var penalizedRSS: Double
        /// R from the dense Cholesky of the (p+1) × (p+1) Schur complement, column-major upper.
        var r: [Double]
        /// [R_ZX c_u], q × (p+1) column-major.
        var rzx: [Double]
        var deviance: Double
    }

    /// The profiled deviance (REML criterion or −2 log-likelihood) at θ; +∞ where undefined.
    func objective(_ theta: [Double]) -> Double {
        evaluate(theta)?.deviance ?? .infinity
    }

    /// The last θ evaluated, its result and, once computed, its gradient's parts: the factor holds
    /// that θ, so asking again (a fit's result at the optimum, a refit's β and σ at its θ,
    /// Satterthwaite's differences from θ̂) costs nothing.
    private var last: (theta: [Double], evaluation: Evaluation?, gradientParts: GradientParts?)?
    typealias GradientParts = (logDeterminant: [Double], residual: [Double])

    /// Solves the PLS problem at θ; nil if a factorisation fails.
    func evaluate(_ theta: [Double]) -> Evaluation? {
        if let last, last.theta == theta { return last.evaluation }
        let e = solve(theta)
        last = (theta, e, nil)
        return e
    }

    /// The gradient's parts at θ (`gradientParts(e, modes(θ, e))`), kept with the evaluation.
    func gradientParts(_ theta: [Double], _ e: Evaluation) -> GradientParts {
        if let last, last.theta == theta, let parts = last.gradientParts { return parts }
        let parts = gradientParts(e, modes(theta, e))
        keep(parts)
        return parts
    }

    /// Keeps `parts`, computed from the evaluation in the factor and its `modes`, with it.
    func keep(_ parts: GradientParts) {
        last?.gradientParts = parts
    }

    private func solve(_ theta: [Double]) -> Evaluation? {
        let cp = crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, p1 = p + 1
        let templates = factor.templates(theta)
        fillSystemMatrix(templates)
        guard cholesky.factorize() else { return nil }
        let logDetL2 = cholesky.logDeterminant()

        var b = cp.zxy
        factor.applyTranspose(templates, to: &b, columns: p1)
        cholesky.forwardSolve(&b, columns: p1)

        // S = [X y]'[X y] − B'B, then S = R'R.
        var s = cp.xyxy
        b.withUnsafeBufferPointer { bp in
            let base = bp.baseAddress!
            for j in 0..<p1 {
                for i in 0...j {
                    var dot = 0.0
                    let ci = base + i * q, cj = base + j * q
                    for k in 0..<q { dot += ci[k] * cj[k] }
                    s[i + j * p1] -= dot
                }
            }
        }
        guard let r = DenseCholesky.upper(s, order: p1) else { return nil }
        var logDetRX2 = 0.0
        for j in 0..<p { logDetRX2 += 2 * log(r[j + j * p1]) }
        let rLast = r[p + p * p1]
        let pwrss = rLast * rLast
        let deviance = Self.profiledDeviance(logDetA: logDetL2, logDetRX2: logDetRX2, penalizedRSS: pwrss,
                                             rows: cp.rows, fixed: p, reml: reml, logWeights: cp.logWeights)
        guard deviance.isFinite else { return nil }
        return Evaluation(logDetL2: logDetL2, logDetRX2: logDetRX2, penalizedRSS: pwrss, r: r, rzx: b,
                          deviance: deviance)
    }

    /// The profiled deviance from its pieces (log|A| = log|L|², however it was found):
    /// ML: log|A| + n (1 + log(2π r²/n)); REML: log|A| + log|R_X|² + (n−p)(1 + log(2π r²/(n−p)));
    /// with precision weights (rows scaled by √w_i), minus Σ log w_i, as lme4's (`ldW`).
    static func profiledDeviance(logDetA: Double, logDetRX2: Double, penalizedRSS pwrss: Double,
                                 rows: Int, fixed p: Int, reml: Bool, logWeights: Double) -> Double {
        let n = Double(rows)
        if reml {
            let dof = n - Double(p)
            return logDetA + logDetRX2 + dof * (1 + log(2 * Double.pi * pwrss / dof)) - logWeights
        }
        return logDetA + n * (1 + log(2 * Double.pi * pwrss / n)) - logWeights
    }

    /// The conditional modes b = Λû of the random effects, given an evaluation and β̂.
    ///
    /// û = P'L⁻ᵀ(c_u − R_ZX β̂).
    func conditionalModes(_ theta: [Double], _ e: Evaluation, beta: [Double]) -> [Double] {
        // The factor in `cholesky` is the one from `evaluate(theta)`, as long as nothing refactored since.
        var u = sphericalModes(e, beta: beta)
        factor.apply(factor.templates(theta), to: &u)
        return u
    }

    /// The diagonal blocks of (Λ'Z'ZΛ + I)⁻¹, one p_k × p_k block (column-major) per level of
    /// each term, from the factor of the last `evaluate`.
    func inverseDiagonalBlocks() -> [[Double]] {
        let cp = crossProducts
        let dims = cp.blockTerm.map { cp.terms[$0].dimension }
        return cholesky.inverseDiagonalBlocks(starts: cp.blockStart, size: dims)
    }

    /// Fills CHOLMOD's values with Λ'Z'ZΛ + I on the fixed pattern.
    ///
    /// Block (a, b) of Λ'Z'ZΛ is T_k' (Z'Z)_ab T_l for a in term k and b in term l.
    private func fillSystemMatrix(_ templates: [[Double]]) {
        let cp = crossProducts
        let out = cholesky.values
        let zz = cp.zzValues
        let cs = cp.zzColumnStarts
        // Each term's dimension and T_k, flat (no per-block array copies in the loop).
        let dims = cp.terms.map(\.dimension)
        let tOffset = templates.indices.map { k in templates[..<k].reduce(0) { $0 + $1.count } }
        let tf = templates.flatMap { $0 }
        let blockTerm = cp.blockTerm, blockStart = cp.blockStart, blockRowStarts = cp.blockRowStarts, blockRows = cp.blockRows
        let maxP = dims.max() ?? 1
        var a = [Double](repeating: 0, count: maxP * maxP), at = a
        for b in 0..<blockTerm.count {
            let l = blockTerm[b], pl = dims[l], cb = blockStart[b], tl = tOffset[l]
            var offset = 0
            for idx in blockRowStarts[b]..<blockRowStarts[b + 1] {
                let ra = Int(blockRows[idx])
                let k = blockTerm[ra], pk = dims[k], tk = tOffset[k]
                if pl == 1 {
                    // A scalar column block (off the diagonal unless p_k = 1 too): T_k' a t_l.
                    let pos = cs[cb] + offset
                    for t in 0..<pk {
                        var sum = 0.0
                        for u in t..<pk { sum += tf[tk + u + t * pk] * zz[pos + u] }
                        out[pos + t] = tf[tl] * sum
                    }
                    offset += pk
                    continue
                }
                // Gather the p_k × p_l block (symmetric completion on the diagonal block).
                let diagonalBlock = ra == b
                for s in 0..<pl {
                    let base = cs[cb + s] + offset
                    if diagonalBlock {
                        for t in 0...s { a[t + s * pk] = zz[base + t]; a[s + t * pk] = zz[base + t] }
                    } else {
                        for t in 0..<pk { a[t + s * pk] = zz[base + t] }
                    }
                }
                // at = A T_l, then T_k' at.
                for s in 0..<pl { for t in 0..<pk {
                    var sum = 0.0
                    for u in s..<pl { sum += a[t + u * pk] * tf[tl + u + s * pl] }
                    at[t + s * pk] = sum
                } }
                for s in 0..<pl {
                    let base = cs[cb + s] + offset
                    let rowsHere = diagonalBlock ? s + 1 : pk
                    for t in 0..<rowsHere {
                        var sum = 0.0
                        for u in t..<pk { sum += tf[tk + u + t * pk] * at[u + s * pk] }
                        out[base + t] = sum
                    }
                }
                offset += pk
            }
        }
        for c in 0..<cp.randomEffectsCount { out[cs[c + 1] - 1] += 1 }
    }
}

/// Small dense Cholesky factorisations and triangular solves (p × p, p small).
enum DenseCholesky {
    /// The upper-triangular R with R'R = S (S column-major, symmetric; only its upper triangle is read).
    /// Returns nil if S is not positive definite.
    static func upper(_ s: [Double], order n: Int) -> [Double]? {
        var r = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            for i in 0...j {
                var sum = s[i + j * n]
                for k in 0..<i { sum -= r[k + i * n] * r[k + j * n] }
                if i == j {
                    guard sum > 0, sum.isFinite else { return nil }
                    r[j + j * n] = sum.squareRoot()
                } else {
                    r[i + j * n] = sum / r[i + i * n]
                }
            }
        }
        return r
    }

    /// Replaces the lower triangle of the `n × n` column-major block at `offset` of `a` by its
    /// Cholesky factor L (A = L L'); false if A is not positive definite.
    static func lowerInPlace(_ a: UnsafeMutableBufferPointer<Double>, offset: Int, order n: Int) -> Bool {
        for j in 0..<n {
            var d = a[offset + j + j * n]
            for k in 0..<j { d -= a[offset + j + k * n] * a[offset + j + k * n] }
            guard d > 0, d.isFinite else { return false }
            let ljj = d.squareRoot()
            a[offset + j + j * n] = ljj
            for i in (j + 1)..<max(j + 1, n) {
                var sum = a[offset + i + j * n]
                for k in 0..<j { sum -= a[offset + i + k * n] * a[offset + j + k * n] }
                a[offset + i + j * n] = sum / ljj
            }
        }
        return true
    }

    /// Solves R x = b for upper-triangular R (the leading `n × n` block of a matrix of order `ld`).
    static func solveUpper(_ r: [Double], leading ld: Int, order n: Int, _ b: [Double]) -> [Double] {
        var x = b
        for i in stride(from: n - 1, through: 0, by: -1) {
            var sum = x[i]
            for k in (i + 1)..<max(i + 1, n) { sum -= r[i + k * ld] * x[k] }
            x[i] = sum / r[i + i * ld]
        }
        return x
    }

    /// Solves R'x = b for upper-triangular R (the leading `n × n` block of a matrix of order `ld`).
    static func solveUpperTransposed(_ r: [Double], leading ld: Int, order n: Int, _ b: [Double]) -> [Double] {
        var x = b
        for i in 0..<n {
            var sum = x[i]
            for k in 0..<i { sum -= r[k + i * ld] * x[k] }
            x[i] = sum / r[i + i * ld]
        }
        return x
    }

    /// (R'R)⁻¹ = R⁻¹R⁻ᵀ for upper-triangular R (leading n × n block of order `ld`), column-major n × n.
    static func inverseOfCrossProduct(_ r: [Double], leading ld: Int, order n: Int) -> [Double] {
        // Rinv by columns: R Rinv = I.
        var rinv = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var e = [Double](repeating: 0, count: n)
            e[j] = 1
            let col = solveUpper(r, leading: ld, order: n, e)
            for i in 0..<n { rinv[i + j * n] = col[i] }
        }
        var out = [Double](repeating: 0, count: n * n)
        for j in 0..<n { for i in 0..<n {
            var sum = 0.0
            for k in max(i, j)..<n { sum += rinv[i + k * n] * rinv[j + k * n] }
            out[i + j * n] = sum
        } }
        return out
    }
}
