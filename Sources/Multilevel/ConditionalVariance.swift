import Foundation

/// The conditional variances of the random effects: Var(b | y) at the estimates, lme4's
/// `ranef(m, condVar = TRUE)` ("postVar"), for caterpillar intervals and `ranef` output.
///
/// With b = Λu and u | y ~ N(û, σ²(Λ'Z'ZΛ + I)⁻¹) (β taken as known, as lme4 does), level j of
/// term k has Var(b_j | y) = σ² T_k M_jj T_k', M_jj the level's diagonal block of
/// (Λ'Z'ZΛ + I)⁻¹. Only those blocks are computed, never the dense inverse: in closed form from
/// the blocked factor's pieces (`BlockedCholesky`), or by Takahashi's recurrences (the inverse
/// on the pattern of L) from CHOLMOD's factor (`SparseCholesky`); on the iterative path,
/// estimated on the fit's probes (`IterativePenalizedLeastSquares.inverseDiagonalBlocks`).
extension FitResult {
    /// For each term, for each level, the p_k × p_k conditional covariance matrix (column-major).
    public func conditionalVariances() throws -> [[[Double]]] {
        let failure = InputError("the model could not be evaluated at its estimates for the conditional variances")
        var blocks: ArraySlice<[Double]>
        if let settings = iterative, let mc = monteCarlo {
            let pls = IterativePenalizedLeastSquares(crossProducts, reml: reml, settings: settings,
                                                     threads: ProcessInfo.processInfo.activeProcessorCount, communicator: SingleProcess())
            if !pls.exact { pls.probes = mc.probes }
            guard let estimated = pls.inverseDiagonalBlocks(theta) else { throw failure }
            blocks = estimated[...]
        } else {
            let pls = try PenalizedLeastSquares(crossProducts, reml: reml, factorization: factorization)
            guard pls.evaluate(theta) != nil else { throw failure }
            blocks = pls.inverseDiagonalBlocks()[...]
        }
        let s2 = sigma * sigma
        let factor = RelativeCovarianceFactor(terms: terms)
        return terms.indices.map { k in
            let p = terms[k].dimension
            let t = factor.template(k, theta: theta)
            return (0..<terms[k].levels.count).map { _ in
                let m = blocks.removeFirst()
                // σ² T M T' (T lower triangular).
                var tm = [Double](repeating: 0, count: p * p), out = tm
                for a in 0..<p { for b in 0..<p { var v = 0.0; for c in 0...a { v += t[a + c * p] * m[c + b * p] }; tm[a + b * p] = v } }
                for a in 0..<p { for b in 0..<p { var v = 0.0; for c in 0...b { v += tm[a + c * p] * t[b + c * p] }; out[a + b * p] = s2 * v } }
                return out
            }
        }
    }
}
