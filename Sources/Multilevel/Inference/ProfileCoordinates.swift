import Foundation

/// The profiles' coordinates ω (each term's SDs and correlations in θ's order, then σ) and
/// their maps to the fit's (θ, σ²): θ per term is T = D L_R/σ (D the SDs, L_R the Cholesky
/// factor of the correlation matrix R), with the Jacobian and the second-order term the
/// profile's Newton steps need.
enum ProfileCoordinates {
    /// For each component of ω: nil for an SD or σ, and for a correlation the components of the two SDs it joins.
    static func correlatedSDs(_ terms: [RandomEffectsTerm]) -> [(Int, Int)?] {
        var out: [(Int, Int)?] = []
        for t in terms {
            let at = out.count, d = t.dimension
            for c in 0..<d { for row in c..<d { out.append(row == c ? nil : (at + position(row, row, d), at + position(c, c, d))) } }
        }
        return out + [nil]
    }

    /// Where T[row, c] (and ω's entry for that pair) is in its term's part of θ (the lower triangle by columns).
    private static func position(_ row: Int, _ c: Int, _ d: Int) -> Int { c * d - c * (c - 1) / 2 + row - c }

    /// A term's SDs and correlation matrix R (d × d, column-major) from its part of ω, which starts at `at`.
    private static func sdsAndCorrelations(_ omega: [Double], at: Int, dimension d: Int) -> (sd: [Double], r: [Double]) {
        var sd = [Double](repeating: 0, count: d), r = [Double](repeating: 0, count: d * d)
        var i = at
        for c in 0..<d { for row in c..<d {
            if row == c { sd[c] = omega[i]; r[c + c * d] = 1 } else { r[row + c * d] = omega[i]; r[c + row * d] = omega[i] }
            i += 1
        } }
        return (sd, r)
    }

    /// θ (T = D L_R/σ per term) and σ from ω, or nil when a term's correlations make no correlation matrix or σ ≤ 0.
    static func thetaAndSigma(_ omega: [Double], terms: [RandomEffectsTerm]) -> (theta: [Double], sigma: Double)? {
        let sigma = omega[omega.count - 1]
        guard sigma > 0 else { return nil }
        var theta: [Double] = []
        for t in terms {
            let d = t.dimension
            let (sd, r) = sdsAndCorrelations(omega, at: theta.count, dimension: d)
            guard let l = semidefiniteCholesky(r, order: d) else { return nil }
            for c in 0..<d { for row in c..<d { theta.append(sd[row] * l[row + c * d] / sigma) } }
        }
        return (theta, sigma)
    }

    /// J = ∂(θ, σ²)/∂ω at ω, square (ω and (θ, σ²) share their layout) and column-major. From
    /// T[r, c] = sd_r L_R[r, c]/σ: ∂/∂sd_r = L_R[r, c]/σ, ∂/∂σ = −T[r, c]/σ, ∂/∂ρ = sd_r ∂L_R[r, c]/∂ρ/σ;
    /// and ∂σ²/∂σ = 2σ. ∂L_R/∂ρ is not finite where a pivot of R is 0 (a correlation of ±1).
    static func jacobian(_ omega: [Double], terms: [RandomEffectsTerm]) -> [Double] {
        let n = omega.count, sigma = omega[n - 1]
        var j = [Double](repeating: 0, count: n * n)
        var at = 0
        for t in terms {
            let d = t.dimension
            let (sd, r) = sdsAndCorrelations(omega, at: at, dimension: d)
            let l = semidefiniteCholesky(r, order: d) ?? [Double](repeating: .nan, count: d * d)
            for c in 0..<d { for row in c..<d {
                let i = at + position(row, c, d)
                j[i + (at + position(row, row, d)) * n] = l[row + c * d] / sigma
                j[i + (n - 1) * n] = -sd[row] * l[row + c * d] / (sigma * sigma)
            } }
            for b in 0..<d { for a in (b + 1)..<d {
                let dl = choleskyDerivative(l, order: d, a, b), column = at + position(a, b, d)
                for c in 0..<d { for row in c..<d { j[at + position(row, c, d) + column * n] = sd[row] * dl[row + c * d] / sigma } }
            } }
            at += t.thetaCount
        }
        j[(n - 1) + (n - 1) * n] = 2 * sigma
        return j
    }

    /// C = Σ_k g_φk ∂²φ_k/∂ω∂ω' at ω (square, column-major), for the gradient g_ψ in ψ = (θ, σ²)
    /// at θ (T_k per term, the templates at ω). φ = (each Σ_k = σ²T_kT_k' in θ's layout, σ²), in
    /// which V is linear; g_φ solves (∂φ/∂ψ)'g_φ = g_ψ, triangular per term (∂Σ_ab/∂T_ab =
    /// σ²T_bb(1 + δ_ab)). A term whose T_k has a zero pivot (an SD of 0, a correlation of ±1) has
    /// no Σ_k-gradient, and its part of C is left out. Then from Σ_aa = sd_a², Σ_ab = sd_a sd_b ρ_ab:
    /// ∂²/∂sd_a² = 2, ∂²/∂sd_a∂sd_b = ρ_ab, ∂²/∂sd_a∂ρ_ab = sd_b; and ∂²σ²/∂σ² = 2.
    static func curvature(_ omega: [Double], theta: [Double], terms: [RandomEffectsTerm], gradient g: [Double]) -> [Double] {
        let n = omega.count, sigma2 = omega[n - 1] * omega[n - 1], last = n - 1
        var c = [Double](repeating: 0, count: n * n)
        func add(_ a: Int, _ b: Int, _ v: Double) {
            c[a + b * n] += v
            if a != b { c[b + a * n] += v }
        }
        // g_σ² of φ: g_ψσ² − Σ_k (TT')_ab g_Σab.
        var gSigma2 = g[last]
        var at = 0
        for t in terms {
            let d = t.dimension
            defer { at += t.thetaCount }
            let tk = (0..<(d * d)).map { i in i % d >= i / d ? theta[at + position(i % d, i / d, d)] : 0 }
            guard (0..<d).allSatisfy({ tk[$0 + $0 * d] != 0 }) else { continue }
            // (∂Σ/∂T)'g_Σ = g_T: entry (r, c) of g_T is σ² Σ_{(a,b)} g_Σab (δ_ar T_bc + δ_br T_ac), a ≥ b.
            // Unknowns in reverse of θ's order: (r, c)'s equation holds g_Σrc and later ones.
            var gs = [Double](repeating: 0, count: d * d)   // g_Σ[a, b], a ≥ b
            for col in stride(from: d - 1, through: 0, by: -1) {
                for row in stride(from: d - 1, through: col, by: -1) {
                    // The other unknowns of this equation, all found already: g_Σ[row, b] T[b, col]
                    // for col < b ≤ row and g_Σ[a, row] T[a, col] for a ≥ row (a > row on the diagonal).
                    var known = 0.0
                    for b in (col + 1)..<(row + 1) { known += gs[row + b * d] * tk[b + col * d] }
                    for a in (row == col ? row + 1 : row)..<d { known += gs[a + row * d] * tk[a + col * d] }
                    let diagonal = (row == col ? 2 : 1) * tk[col + col * d]
                    gs[row + col * d] = (g[at + position(row, col, d)] / sigma2 - known) / diagonal
                }
            }
            let (sd, r) = sdsAndCorrelations(omega, at: at, dimension: d)
            for col in 0..<d {
                for row in col..<d {
                    let gi = gs[row + col * d]
                    var tt = 0.0
                    for k in 0...col { tt += tk[row + k * d] * tk[col + k * d] }
                    gSigma2 -= tt * gi
                    let sdRow = at + position(row, row, d), sdCol = at + position(col, col, d)
                    if row == col {
                        add(sdRow, sdRow, 2 * gi)
                    } else {
                        let rho = at + position(row, col, d)
                        add(sdRow, sdCol, gi * r[row + col * d])
                        add(sdRow, rho, gi * sd[col])
                        add(sdCol, rho, gi * sd[row])
                    }
                }
            }
        }
        add(last, last, 2 * gSigma2)
        return c
    }

    /// ∂L/∂ρ_ab for LL' = R with unit diagonal and R[a, b] = R[b, a] = ρ_ab (a > b): the Cholesky
    /// recurrences L_jj² = 1 − Σ_k L_jk², L_ij L_jj = R_ij − Σ_k L_ik L_jk (k < j) differentiated, column by column.
    static func choleskyDerivative(_ l: [Double], order d: Int, _ a: Int, _ b: Int) -> [Double] {
        var dl = [Double](repeating: 0, count: d * d)
        for j in 0..<d {
            let ljj = l[j + j * d]
            var djj = 0.0
            for k in 0..<j { djj -= l[j + k * d] * dl[j + k * d] }
            dl[j + j * d] = djj / ljj
            for i in (j + 1)..<d {
                var v = i == a && j == b ? 1.0 : 0.0
                for k in 0..<j { v -= dl[i + k * d] * l[j + k * d] + l[i + k * d] * dl[j + k * d] }
                dl[i + j * d] = (v - l[i + j * d] * dl[j + j * d]) / ljj
            }
        }
        return dl
    }

    /// The lower L with LL' = S for a positive semidefinite S (zero columns at zero pivots); nil if S is not semidefinite.
    static func semidefiniteCholesky(_ s: [Double], order d: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: d * d)
        let scale = (0..<d).map { s[$0 + $0 * d] }.max() ?? 0
        for j in 0..<d {
            var pivot = s[j + j * d]
            for k in 0..<j { pivot -= l[j + k * d] * l[j + k * d] }
            if pivot < -1e-10 * max(scale, 1e-300) { return nil }
            if pivot <= 1e-12 * scale { continue }
            let ljj = pivot.squareRoot()
            l[j + j * d] = ljj
            for i in (j + 1)..<max(j + 1, d) {
                var v = s[i + j * d]
                for k in 0..<j { v -= l[i + k * d] * l[j + k * d] }
                l[i + j * d] = v / ljj
            }
        }
        return l
    }
}
