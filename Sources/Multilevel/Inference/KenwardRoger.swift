import CCHOLMOD
import Foundation

/// Kenward and Roger's (1997) small-sample tests, as pbkrtest's `vcovAdj` and `KRmodcomp`
/// compute them (lmerTest's `ddf = "Kenward-Roger"`).
///
/// The variance parameters are the covariances ψ: each random term's covariance entries
/// Σ_k[a, b] (a ≤ b) and σ², so that V = Var(y) = Σ_r ψ_r G_r is linear in them:
/// G_r = Z D_r Z' (D_r the 1s of entry (a, b), and (b, a), in every level's block of term k)
/// and G_σ² = I. With Φ = Var(β̂) = (X'V⁻¹X)⁻¹,
///
///     P_r = −X'V⁻¹G_rV⁻¹X,   Q_rs = X'V⁻¹G_rV⁻¹G_sV⁻¹X,
///     I_rs = tr(V⁻¹G_rV⁻¹G_s) − 2 tr(ΦQ_rs) + tr(ΦP_rΦP_s)   (= tr(ΠG_rΠG_s), Π REML's projection),
///     W = 2 I⁻¹,   Φ_A = Φ + 2Φ [Σ_rs W_rs (Q_rs − P_rΦP_s)] Φ.
///
/// pbkrtest forms V⁻¹ as a dense n × n matrix. Here every product goes through Woodbury,
/// V⁻¹ = σ⁻²(I − ZMZ'), M = ΛC⁻¹Λ', C = Λ'Z'ZΛ + I, so that only Z'Z, Z'X, X'X (the
/// cross-products) and n enter: with B = Z'V⁻¹Z and U = Z'V⁻¹X,
///
///     P_r = −U'D_rU,   Q_rs = (D_rU)'B(D_sU),   tr(V⁻¹G_rV⁻¹G_s) = tr(D_rBD_sB),
///
/// and the σ² entries from Z'V⁻²Z, Z'V⁻²X, X'V⁻²X, X'V⁻³X and tr V⁻² = σ⁻⁴(n − 2 tr N + tr N²),
/// N = MZ'Z. The algebra is dense in q (the random effects), not in n, and is done up to
/// `maxRandomEffects`.
enum KenwardRoger {
    /// Above this many random effects the dense q × q algebra (several q³ products) is not done.
    static let maxRandomEffects = 3000

    /// The bytes its dense algebra takes: about ten q × q matrices (q = 3000: 0.68 GB measured
    /// peak, 10 s).
    static func predictedBytes(_ q: Int) -> Double { 10 * 8 * Double(q) * Double(q) }

    /// Refuses, before the fit, a model with more random effects than that, or whose dense
    /// algebra is predicted not to fit in `limit`.
    static func requireSize(_ q: Int, limit: MemoryLimit) throws {
        guard q <= maxRandomEffects else {
            throw InputError("--ddf kenward-roger: this model has \(q) random effects, and Kenward-Roger's dense algebra in them "
                + "is done for at most \(maxRandomEffects); use --ddf satterthwaite")
        }
        guard predictedBytes(q) <= limit.bytes else {
            throw InputError("--ddf kenward-roger: its dense algebra in the \(q) random effects needs about "
                + "\(FactorizationChoice.formatBytes(predictedBytes(q))), more than the \(FactorizationChoice.formatBytes(limit.bytes)) "
                + "of \(limit.source); use --ddf satterthwaite")
        }
    }

    static func tests(_ cp: CrossProducts, factor: RelativeCovarianceFactor, theta: [Double], sigma: Double,
                      covariance phi: [Double]) throws -> KenwardRogerTests {
        let q = cp.randomEffectsCount, p = cp.fixedCount, n = Double(cp.rows)
        let sigma2 = sigma * sigma
        let zz = cp.denseZtZ()
        var zx = [Double](repeating: 0, count: q * p)
        for j in 0..<p { for i in 0..<q { zx[i + j * q] = cp.zxy[i + j * q] } }
        var xx = [Double](repeating: 0, count: p * p)
        for j in 0..<p { for i in 0..<p { xx[i + j * p] = cp.xx(i, j) } }

        // Λ dense, C = Λ'Z'ZΛ + I, M = ΛC⁻¹Λ', N = MZ'Z.
        var lambda = [Double](repeating: 0, count: q * q)
        for (k, term) in factor.terms.enumerated() {
            let t = factor.template(k, theta: theta), d = term.dimension
            for level in 0..<term.levels.count {
                let base = term.offset + level * d
                for b in 0..<d { for a in 0..<d { lambda[base + a + (base + b) * q] = t[a + b * d] } }
            }
        }
        var c = Dense.product(lambda, Dense.product(zz, lambda, q, q, q), q, q, q, transposeA: true)
        for i in 0..<q { c[i + i * q] += 1 }
        guard let cInverse = Dense.inverseOfPositiveDefinite(c, q) else {
            throw InputError("--ddf kenward-roger: Λ'Z'ZΛ + I is not positive definite at θ̂")
        }
        let m = Dense.product(lambda, Dense.product(cInverse, lambda, q, q, q, transposeB: true), q, q, q)
        let nz = Dense.product(m, zz, q, q, q)
        var iMinusN = nz.map { -$0 }
        for i in 0..<q { iMinusN[i + i * q] += 1 }

        // B = Z'V⁻¹Z = σ⁻² Z'Z(I − N); U = Z'V⁻¹X = σ⁻²(I − N)'Z'X.
        let bMatrix = Dense.product(zz, iMinusN, q, q, q).map { $0 / sigma2 }
        let u = Dense.product(iMinusN, zx, q, q, p, transposeA: true).map { $0 / sigma2 }
        // Z'V⁻²Z = σ⁻²(I − N)'B, Z'V⁻²X = σ⁻²(I − N)'U.
        let b2 = Dense.product(iMinusN, bMatrix, q, q, q, transposeA: true).map { $0 / sigma2 }
        let u2 = Dense.product(iMinusN, u, q, q, p, transposeA: true).map { $0 / sigma2 }
        // X'V⁻²X = σ⁻⁴(X'X − 2 X'ZMZ'X + X'ZMZ'ZMZ'X); X'V⁻³X = σ⁻²(X'V⁻²X − U'MU).
        let mzx = Dense.product(m, zx, q, q, p)
        let xzmzx = Dense.product(zx, mzx, p, q, p, transposeA: true)
        let mzxZZmzx = Dense.product(mzx, Dense.product(zz, mzx, q, q, p), p, q, p, transposeA: true)
        let xv2x = (0..<(p * p)).map { (xx[$0] - 2 * xzmzx[$0] + mzxZZmzx[$0]) / (sigma2 * sigma2) }
        let umu = Dense.product(u, Dense.product(m, u, q, q, p), p, q, p, transposeA: true)
        let xv3x = (0..<(p * p)).map { (xv2x[$0] - umu[$0]) / sigma2 }
        let traceN = (0..<q).reduce(0.0) { $0 + nz[$1 + $1 * q] }, traceN2 = Dense.traceOfProduct(nz, nz, q)
        let traceV2 = (n - 2 * traceN + traceN2) / (sigma2 * sigma2)

        // The parameters' D_r as lists of (row, column) entries; σ² last (nil).
        var entries: [[(Int, Int)]?] = []
        for term in factor.terms {
            let d = term.dimension
            for a in 0..<d {
                for b in a..<d {
                    var list: [(Int, Int)] = []
                    for level in 0..<term.levels.count {
                        let base = term.offset + level * d
                        list.append((base + a, base + b))
                        if a != b { list.append((base + b, base + a)) }
                    }
                    entries.append(list)
                }
            }
        }
        entries.append(nil)
        let count = entries.count

        func times(_ list: [(Int, Int)], _ x: [Double], columns k: Int) -> [Double] {   // D_r x for q × k x
            var out = [Double](repeating: 0, count: q * k)
            for (i, j) in list { for col in 0..<k { out[i + col * q] += x[j + col * q] } }
            return out
        }
        let du = entries.map { $0.map { times($0, u, columns: p) } }
        let bdu = du.map { $0.map { Dense.product(bMatrix, $0, q, q, p) } }
        let pMatrices: [[Double]] = entries.indices.map { r in
            if let dur = du[r] { return Dense.product(u, dur, p, q, p, transposeA: true).map { -$0 } }
            return xv2x.map { -$0 }
        }
        func qMatrix(_ r: Int, _ s: Int) -> [Double] {   // r ≤ s
            switch (du[r], du[s]) {
            case let (dur?, _?): return Dense.product(dur, bdu[s]!, p, q, p, transposeA: true)
            case let (dur?, nil): return Dense.product(dur, u2, p, q, p, transposeA: true)
            default: return xv3x
            }
        }
        func kTrace(_ r: Int, _ s: Int) -> Double {
            switch (entries[r], entries[s]) {
            case let (lr?, ls?):
                var sum = 0.0
                for (i, j) in lr { for (k, l) in ls { sum += bMatrix[j + k * q] * bMatrix[l + i * q] } }
                return sum
            case let (lr?, nil): return lr.reduce(0.0) { $0 + b2[$1.1 + $1.0 * q] }
            default: return traceV2
            }
        }
        var qMatrices = [[Double]](repeating: [], count: count * count)
        var information = [Double](repeating: 0, count: count * count)
        let phiP = pMatrices.map { Dense.product(phi, $0, p, p, p) }
        for r in 0..<count {
            for s in r..<count {
                let qrs = qMatrix(r, s)
                qMatrices[r + s * count] = qrs
                let value = kTrace(r, s) - 2 * Dense.traceOfProduct(phi, qrs, p) + Dense.traceOfProduct(phiP[r], phiP[s], p)
                information[r + s * count] = value
                information[s + r * count] = value
            }
        }
        guard let w = Dense.symmetricPseudoInverse(information, count, singularBelow: 1e-10)?.map({ 2 * $0 }) else {
            throw InputError("--ddf kenward-roger: the information matrix of the covariance parameters could not be inverted")
        }
        var uSum = [Double](repeating: 0, count: p * p)
        for r in 0..<count {
            for s in r..<count {
                let prPhiPs = Dense.product(pMatrices[r], phiP[s], p, p, p)
                let term = zip(qMatrices[r + s * count], prPhiPs).map { w[r + s * count] * ($0 - $1) }
                if r == s {
                    for i in 0..<(p * p) { uSum[i] += term[i] }
                } else {
                    for j in 0..<p { for i in 0..<p { uSum[i + j * p] += term[i + j * p] + term[j + i * p] } }
                }
            }
        }
        let correction = Dense.product(phi, Dense.product(uSum, phi, p, p, p), p, p, p)
        let adjusted = (0..<(p * p)).map { phi[$0] + 2 * correction[$0] }
        return KenwardRogerTests(p: p, phi: phi, adjusted: adjusted, pMatrices: pMatrices, w: w)
    }
}

/// Kenward–Roger t- and F-tests from Φ, Φ_A, the P_r and W (pbkrtest's `Lb_ddf` and `.KR_adjust`).
struct KenwardRogerTests: ContrastTests {
    let p: Int
    let phi: [Double]
    let adjusted: [Double]
    let pMatrices: [[Double]]
    let w: [Double]

    /// The rows of L as an r × p column-major matrix.
    private func matrix(_ rows: [[Double]]) -> [Double] {
        (0..<(rows.count * p)).map { rows[$0 % rows.count][$0 / rows.count] }
    }

    /// Denominator df of Lβ (q rows) and the F scaling: A1, A2 from Θ = L'(LΦL')⁻¹L and
    /// u_r = ΘΦP_rΦ, then Kenward and Roger's moment matching.
    private func adjustment(_ rows: [[Double]], q: Int) -> (ddf: Double, scaling: Double)? {
        let r = rows.count
        let l = matrix(rows)
        let lPhiLt = Dense.product(l, Dense.product(phi, l, p, p, r, transposeB: true), r, p, r)
        guard let inverse = Dense.inverse(lPhiLt, order: r) else { return nil }
        let theta = Dense.product(l, Dense.product(inverse, l, r, r, p), p, r, p, transposeA: true)
        let thetaPhi = Dense.product(theta, phi, p, p, p)
        let us = pMatrices.map { Dense.product(thetaPhi, Dense.product($0, phi, p, p, p), p, p, p) }
        let traces = us.map { u in (0..<p).reduce(0.0) { $0 + u[$1 + $1 * p] } }
        let count = pMatrices.count
        var a1 = 0.0, a2 = 0.0
        for i in 0..<count {
            for j in i..<count {
                let e = i == j ? 1.0 : 2.0
                a1 += e * w[i + j * count] * traces[i] * traces[j]
                a2 += e * w[i + j * count] * Dense.traceOfProduct(us[i], us[j], p)
            }
        }
        let qd = Double(q)
        let b = (a1 + 6 * a2) / (2 * qd)
        let g = ((qd + 1) * a1 - (qd + 4) * a2) / ((qd + 2) * a2)
        let denominator = 3 * qd + 2 * (1 - g)
        let c1 = g / denominator, c2 = (qd - g) / denominator, c3 = (qd + 2 - g) / denominator
        var v0 = 1 + c1 * b
        let v1 = 1 - c2 * b, v2 = 1 - c3 * b
        if abs(v0) < 1e-10 { v0 = 0 }
        let numerator = 1 - a2 / qd
        let ratio = abs(numerator) < 1e-14 && abs(v1) < 1e-14 ? 0 : numerator / v1
        let rho = ratio * ratio * v0 / (qd * v2)
        let ddf = 4 + (qd + 2) / (qd * rho - 1)
        let scaling = abs(ddf - 2) < 1e-2 ? 1 : ddf * (1 - a2 / qd) / (ddf - 2)
        return (ddf, scaling)
    }

    /// SE from Φ_A; df from `Lb_ddf` with q = 1.
    func tTest(_ l: [Double]) -> (standardError: Double, df: Double) {
        let variance = Dense.bilinear(l, adjusted, l, p)
        return (variance.squareRoot(), adjustment([l], q: 1)?.ddf ?? .nan)
    }

    /// F = scaling × (Lβ̂)'(LΦ_AL')⁻¹(Lβ̂)/q, q = rank(L) (L of full row rank here).
    func fTest(_ rows: [[Double]], beta: [Double]) -> (numeratorDF: Int, denominatorDF: Double, f: Double, unscaledF: Double)? {
        let r = rows.count
        guard r > 0, let (ddf, scaling) = adjustment(rows, q: r) else { return nil }
        let lb = rows.map { zip($0, beta).reduce(0.0) { $0 + $1.0 * $1.1 } }
        let l = matrix(rows)
        let lAdjLt = Dense.product(l, Dense.product(adjusted, l, p, p, r, transposeB: true), r, p, r)
        guard let inverse = Dense.inverse(lAdjLt, order: r) else { return nil }
        let wald = Dense.bilinear(lb, inverse, lb, r)
        return (r, ddf, scaling * wald / Double(r), wald / Double(r))
    }
}
