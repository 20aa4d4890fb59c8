import Foundation

/// The gradient of the profiled deviance with respect to θ, from the cross-products and the
/// factor alone (no rows).
///
/// With M = [Z X]'[Z X], Λ̃ = diag(Λ, I_p), C = Λ̃'MΛ̃ + diag(I_q, 0) (so log|C| = log|L|² + log|R_X|²)
/// and Λ̇_i = ∂Λ/∂θ_i = I_ℓ ⊗ E_ab for θ_i = T_k[a, b]:
///
///     REML: ∂d/∂θ_i = 2 tr(C⁻¹ Λ̃̇_i'MΛ̃) − 2 (n − p) û'Λ̇_i'z_r / r²
///     ML:   the same with A = Λ'Z'ZΛ + I in place of C, and n in place of n − p,
///
/// where z_r = Z'(y − ZΛû − Xβ̂) = Z'y − Z'ZΛû − Z'Xβ̂ (the envelope theorem: r² is minimal in
/// û and β̂). The trace is a sum over the levels of term k, G_k[a, b] = Σ_l (MΛ̃C⁻¹)[(l,a), (l,b)],
/// and needs C⁻¹ only where Z'Z is stored (its block pattern) and in its β rows:
///
///     C⁻¹_uu = A⁻¹ + F S⁻¹F',   C⁻¹_βu = −S⁻¹F',   F = A⁻¹Λ'Z'X = P'L⁻ᵀR_ZX,   S = R_X'R_X,
///
/// A⁻¹ on the pattern being the selected inverse of the factor (`inverseOnPattern`: Takahashi's
/// recurrences on CHOLMOD's factor, closed form on the blocked one). No dense inverse is formed.
extension PenalizedLeastSquares {
    /// ∂d/∂θ at θ, given `evaluate(theta)` (the factor in use must still be that evaluation's).
    func gradient(_ theta: [Double], _ e: Evaluation) -> [Double] {
        gradient(e, modes(theta, e))
    }

    /// The same from `modes(theta, e)`, which the AI matrix can share. Its parts stay with the
    /// evaluation (`gradientParts(theta, e)`).
    func gradient(_ e: Evaluation, _ modes: Modes) -> [Double] {
        let (logDeterminant, residual) = gradientParts(e, modes)
        keep((logDeterminant, residual))
        let scale = crossProducts.residualDegreesOfFreedom(reml: reml) / e.penalizedRSS
        return zip(logDeterminant, residual).map { $0 + scale * $1 }
    }

    /// The two parts of the gradient, given `evaluate(theta)` and its modes: ∂log|C|/∂θ_i = 2 tr(C⁻¹Λ̃̇_i'MΛ̃)
    /// (ML: ∂log|A|/∂θ_i) and ∂r²/∂θ_i = −2 û'Λ̇_i'z_r. The profiled deviance's gradient is
    /// their sum with the second scaled by ν/r²; the deviance with σ explicit (profiles) scales it by 1/σ².
    func gradientParts(_ e: Evaluation, _ modes: Modes) -> GradientParts {
        let cp = crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, p1 = p + 1
        let (templates, u, zr) = modes
        let cs = cp.zzColumnStarts, zz = cp.zzValues

        // F̃ = F R_X⁻¹ (C⁻¹_uu = A⁻¹ + F̃F̃') and H = F S⁻¹ = F̃R_X⁻ᵀ (C⁻¹_βu = −H'), q × p row-major.
        var ft = [Double](), h = [Double]()
        if reml, p > 0 {
            var f = Array(e.rzx[0..<(p * q)])
            cholesky.backwardSolve(&f, columns: p)
            ft = [Double](repeating: 0, count: q * p)
            h = ft
            for x in 0..<q {
                // R_X'f̃ = f_x, then R_X h = f̃.
                let row = DenseCholesky.solveUpperTransposed(e.r, leading: p1, order: p, (0..<p).map { f[x + $0 * q] })
                for i in 0..<p { ft[x * p + i] = row[i] }
                let hx = DenseCholesky.solveUpper(e.r, leading: p1, order: p, row)
                for i in 0..<p { h[x * p + i] = hx[i] }
            }
        }
        func lowRank(_ x: Int, _ y: Int) -> Double {
            var sum = 0.0
            for i in 0..<p { sum += ft[x * p + i] * ft[y * p + i] }
            return sum
        }

        let ainv = cholesky.inverseOnPattern()
        let dims = cp.terms.map(\.dimension)
        var g = dims.map { [Double](repeating: 0, count: $0 * $0) }
        // Per stored block (row block rb of term k, column block cb of term l): Q = (Z'Z)_{rb,cb},
        // V = C⁻¹_{rb,cb}; G_k += Q T_l V' and, off the diagonal, G_l += Q' T_k V.
        let blockTerm = cp.blockTerm, blockStart = cp.blockStart
        let maxP = dims.max() ?? 1
        var qm = [Double](repeating: 0, count: maxP * maxP), vm = qm, qt = qm
        for cb in 0..<blockTerm.count {
            let l = blockTerm[cb], pl = dims[l], cStart = blockStart[cb]
            var offset = 0
            for idx in cp.blockRowStarts[cb]..<cp.blockRowStarts[cb + 1] {
                let rb = Int(cp.blockRows[idx]), k = blockTerm[rb], pk = dims[k], rStart = blockStart[rb]
                if pk == 1 && pl == 1 {
                    // Scalar blocks: G_k += q t_l v and, off the diagonal, G_l += q t_k v.
                    let at = cs[cStart] + offset
                    let v = ainv[at] + (ft.isEmpty ? 0 : lowRank(rStart, cStart))
                    g[k][0] += zz[at] * templates[l][0] * v
                    if rb != cb { g[l][0] += zz[at] * templates[k][0] * v }
                    offset += 1
                    continue
                }
                for s in 0..<pl {
                    let base = cs[cStart + s] + offset
                    for t in 0..<(rb == cb ? s + 1 : pk) {
                        var v = ainv[base + t]
                        if !ft.isEmpty { v += lowRank(rStart + t, cStart + s) }
                        qm[t + s * pk] = zz[base + t]
                        vm[t + s * pk] = v
                        if rb == cb { qm[s + t * pk] = zz[base + t]; vm[s + t * pk] = v }
                    }
                }
                addProduct(&g[k], qm, templates[l], vm, scratch: &qt, rows: pk, inner: pl, transposeOuter: false)
                if rb != cb { addProduct(&g[l], qm, templates[k], vm, scratch: &qt, rows: pl, inner: pk, transposeOuter: true) }
                offset += pk
            }
        }

        var logDeterminant: [Double] = [], residualSquares: [Double] = []
        logDeterminant.reserveCapacity(factor.thetaCount)
        residualSquares.reserveCapacity(factor.thetaCount)
        for (k, term) in cp.terms.enumerated() {
            let pk = term.dimension
            for col in 0..<pk {
                for row in col..<pk {
                    // The fixed part −Σ_levels Σ_j (Z'X)[(l,row), j] H[(l,col), j] and the residual part.
                    var fixed = 0.0, residual = 0.0
                    for level in 0..<term.levels.count {
                        let xr = term.offset + level * pk + row, xc = term.offset + level * pk + col
                        if !h.isEmpty { for j in 0..<p { fixed -= cp.zxy[xr + j * q] * h[xc * p + j] } }
                        residual += zr[xr] * u[xc]
                    }
                    logDeterminant.append(2 * (g[k][row + col * pk] + fixed))
                    residualSquares.append(-2 * residual)
                }
            }
        }
        return (logDeterminant, residualSquares)
    }

    /// û, the spherical conditional modes (b = Λû): P'L⁻ᵀ(c_u − R_ZX β̂).
    func sphericalModes(_ e: Evaluation, beta: [Double]) -> [Double] {
        let q = crossProducts.randomEffectsCount, p = crossProducts.fixedCount
        var u = Array(e.rzx[(p * q)..<((p + 1) * q)])
        for j in 0..<p where beta[j] != 0 {
            for k in 0..<q { u[k] -= e.rzx[k + j * q] * beta[j] }
        }
        cholesky.backwardSolve(&u, columns: 1)
        return u
    }
}

/// out += Q T V' (Q, V: m × n, T: n × n lower), or with `transposeOuter` out += Q' T V
/// (Q, V: n × m, T: n × n); out is `rows` × `rows` column-major. All column-major; `scratch`
/// holds at least m × n values.
private func addProduct(_ out: inout [Double], _ qm: [Double], _ t: [Double], _ vm: [Double], scratch qt: inout [Double],
                        rows: Int, inner: Int, transposeOuter: Bool) {
    // With transposeOuter, Q and V are inner × rows; otherwise rows × inner.
    let m = rows, n = inner
    func qAt(_ i: Int, _ j: Int) -> Double { transposeOuter ? qm[j + i * n] : qm[i + j * m] }   // (Q or Q')[i, j], i < m, j < n
    func vAt(_ i: Int, _ j: Int) -> Double { transposeOuter ? vm[j + i * n] : vm[i + j * m] }
    // (Q T)[i, c] = Σ_{s ≥ c} Q[i, s] T[s, c]; then out[i, j] += Σ_c (QT)[i, c] V[j, c].
    for c in 0..<n { for i in 0..<m {
        var sum = 0.0
        for s in c..<n { sum += qAt(i, s) * t[s + c * n] }
        qt[i + c * m] = sum
    } }
    for j in 0..<m { for i in 0..<m {
        var sum = 0.0
        for c in 0..<n { sum += qt[i + c * m] * vAt(j, c) }
        out[i + j * m] += sum
    } }
}

extension PenalizedLeastSquares {
    /// The average-information (AI) matrix of the profiled deviance at θ: an approximation to its
    /// Hessian that needs one forward solve per θ entry and no second derivatives.
    ///
    /// With û, z_r as in `gradient`, the working variate of θ_i is Z a_i with
    /// a_i = Λ̇_i û + ΛΛ̇_i'z_r (V̇_i P y, as Λ'z_r = û), and g_i = [Λ'Z'Z a_i; X'Z a_i]. Then
    ///
    ///     H_ij = σ⁻² (a_i'Z'Z a_j − g_i'C⁻¹g_j),   H_iσ² = a_i'z_r / σ⁴,   H_σ²σ² = ν / σ⁴
    ///
    /// (ν = n − p for REML, n for ML; σ² = r²/ν), and σ² is profiled out by the Schur complement
    /// H_ij − H_iσ² H_jσ² / H_σ²σ². g'C⁻¹g = ‖L̃⁻¹g‖² with L̃ = [L 0; R_ZX' R_X'], so only forward
    /// solves are needed. β is profiled out as in REML for both criteria.
    /// Returns the m × m matrix, column-major.
    func averageInformation(_ theta: [Double], _ e: Evaluation) -> [Double] {
        averageInformation(e, modes(theta, e))
    }

    /// The same from `modes(theta, e)`.
    func averageInformation(_ e: Evaluation, _ modes: Modes) -> [Double] {
        let (k, azr) = informationParts(e, modes)
        let nu = crossProducts.residualDegreesOfFreedom(reml: reml)
        return Self.profiledInformation(k, azr, sigma2: e.penalizedRSS / nu, nu: nu)
    }

    /// H_ij = K_ij/σ² − H_iσ² H_jσ² / H_σ²σ² from K and a_i'z_r (`informationParts`), m × m column-major.
    static func profiledInformation(_ k: [Double], _ azr: [Double], sigma2: Double, nu: Double) -> [Double] {
        let m = azr.count
        var h = [Double](repeating: 0, count: m * m)
        for j in 0..<m {
            for i in 0...j {
                let v = k[i + j * m] / sigma2 - azr[i] * azr[j] / (sigma2 * sigma2 * nu)
                h[i + j * m] = v
                h[j + i * m] = v
            }
        }
        return h
    }

    /// The AI matrix of the deviance in (θ, σ²) at a given σ², σ² not profiled out (profiles, where
    /// σ is a parameter): H_ij = K_ij/σ², H_iσ² = a_i'z_r/σ⁴ and H_σ²σ² = r²/σ⁶ (y'PV̇PV̇Py with
    /// V̇ = V/σ², which is ν/σ⁴ at σ² = r²/ν). Returns the (m + 1) × (m + 1) matrix, σ² last, column-major.
    func averageInformation(_ e: Evaluation, _ modes: Modes, sigma2: Double) -> [Double] {
        let (k, azr) = informationParts(e, modes)
        return Self.information(k, azr, penalizedRSS: e.penalizedRSS, sigma2: sigma2)
    }

    /// That matrix from K, a_i'z_r and r² (both paths).
    static func information(_ k: [Double], _ azr: [Double], penalizedRSS: Double, sigma2: Double) -> [Double] {
        let m = azr.count, m1 = m + 1
        var h = [Double](repeating: 0, count: m1 * m1)
        for j in 0..<m {
            for i in 0..<m { h[i + j * m1] = k[i + j * m] / sigma2 }
            h[j + m * m1] = azr[j] / (sigma2 * sigma2)
            h[m + j * m1] = h[j + m * m1]
        }
        h[m + m * m1] = penalizedRSS / (sigma2 * sigma2 * sigma2)
        return h
    }

    /// K = σ² H_θθ (a_i'Z'Z a_j − g_i'C⁻¹g_j, m × m column-major) and a_i'z_r: what both AI matrices are made of.
    private func informationParts(_ e: Evaluation, _ modes: Modes) -> (k: [Double], azr: [Double]) {
        let cp = crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, p1 = p + 1, m = factor.thetaCount
        let (templates, u, zr) = modes
        let a = Self.workingVectors(cp.terms, templates: templates, u: u, zr: zr)
        // Z'Z a_i, then g_i's u part Λ'Z'Z a_i and β part X'Z a_i.
        var zza = [Double](repeating: 0, count: q * m)
        let cs = cp.zzColumnStarts, ri = cp.zzRowIndices, zz = cp.zzValues
        for j in 0..<m {
            for c in 0..<q {
                for k in cs[c]..<cs[c + 1] {
                    let r = Int(ri[k])
                    zza[r + j * q] += zz[k] * a[c + j * q]
                    if r != c { zza[c + j * q] += zz[k] * a[r + j * q] }
                }
            }
        }
        var wu = zza
        factor.applyTranspose(templates, to: &wu, columns: m)
        cholesky.forwardSolve(&wu, columns: m)
        // R_X' w_β = X'Z a_j − R_ZX' w_u.
        var wb = [Double](repeating: 0, count: p * m)
        for j in 0..<m {
            let rhs = (0..<p).map { c in
                (0..<q).reduce(0.0) { $0 + cp.zxy[$1 + c * q] * a[$1 + j * q] - e.rzx[$1 + c * q] * wu[$1 + j * q] }
            }
            let w = DenseCholesky.solveUpperTransposed(e.r, leading: p1, order: p, rhs)
            for c in 0..<p { wb[c + j * p] = w[c] }
        }
        let azr = (0..<m).map { j in (0..<q).reduce(0.0) { $0 + a[$1 + j * q] * zr[$1] } }
        var k = [Double](repeating: 0, count: m * m)
        for j in 0..<m {
            for i in 0...j {
                var sum = 0.0
                for x in 0..<q { sum += a[x + i * q] * zza[x + j * q] - wu[x + i * q] * wu[x + j * q] }
                for c in 0..<p { sum -= wb[c + i * p] * wb[c + j * p] }
                k[i + j * m] = sum
                k[j + i * m] = sum
            }
        }
        return (k, azr)
    }

    /// a_i = Λ̇_i û + ΛΛ̇_i'z_r, one column per θ entry (q × m column-major; nonzero on its term's columns only).
    static func workingVectors(_ terms: [RandomEffectsTerm], templates: [[Double]], u: [Double], zr: [Double]) -> [Double] {
        let q = u.count, m = terms.reduce(0) { $0 + $1.thetaCount }
        var a = [Double](repeating: 0, count: q * m)
        var i = 0
        for (k, term) in terms.enumerated() {
            let pk = term.dimension, t = templates[k]
            for col in 0..<pk {
                for row in col..<pk {
                    for level in 0..<term.levels.count {
                        let base = term.offset + level * pk
                        a[base + row + i * q] += u[base + col]                       // Λ̇_i û: E_{row,col} û_l
                        let z = zr[base + row]                                       // Λ Λ̇_i'z_r: T_k e_col z_r(l,row)
                        for r in col..<pk { a[base + r + i * q] += t[r + col * pk] * z }
                    }
                    i += 1
                }
            }
        }
        return a
    }

    /// What both the gradient and the AI matrix start from: the templates T_k, the spherical
    /// modes û, and z_r = Z'r̂ at b = Λû and β̂; computed once for both (`derivatives`).
    typealias Modes = (templates: [[Double]], u: [Double], zr: [Double])

    func modes(_ theta: [Double], _ e: Evaluation) -> Modes {
        let templates = factor.templates(theta)
        let beta = fixedEffects(e)
        let u = sphericalModes(e, beta: beta)
        var b = u
        factor.apply(templates, to: &b)
        return (templates, u, residualScores(b, beta: beta))
    }

    /// z_r = Z'(y − Zb − Xβ̂) = Z'y − Z'Z b − Z'X β̂, from the cross-products.
    func residualScores(_ b: [Double], beta: [Double]) -> [Double] {
        crossProducts.residualScores(b, beta: beta)
    }
}

extension CrossProducts {
    /// z_r = Z'(y − Zb − Xβ) = Z'y − Z'Z b − Z'X β.
    func residualScores(_ b: [Double], beta: [Double]) -> [Double] {
        let cp = self
        let q = cp.randomEffectsCount, p = cp.fixedCount
        var zr = Array(cp.zxy[(p * q)..<((p + 1) * q)])
        for j in 0..<p where beta[j] != 0 { for x in 0..<q { zr[x] -= cp.zxy[x + j * q] * beta[j] } }
        let cs = cp.zzColumnStarts, ri = cp.zzRowIndices, zz = cp.zzValues
        for c in 0..<q {
            for k in cs[c]..<cs[c + 1] {
                let r = Int(ri[k])
                zr[r] -= zz[k] * b[c]
                if r != c { zr[c] -= zz[k] * b[r] }
            }
        }
        return zr
    }
}
