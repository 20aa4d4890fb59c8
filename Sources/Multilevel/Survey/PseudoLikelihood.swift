import Foundation

/// The Gaussian pseudo-log-likelihood of a two-level design with sampling weights at both
/// levels (Pfeffermann et al. 1998; Rabe-Hesketh & Skrondal 2006), from `ClusterCrossProducts`.
///
/// Cluster j (level-2 weight wⱼ) has rows with scaled level-1 weights w*ᵢ = cⱼwᵢ (`WeightScaling`)
/// and random effects bⱼ = Λuⱼ, uⱼ ~ N(0, σ²I). Its weighted log-likelihood Σᵢ w*ᵢ log f(yᵢ | uⱼ)
/// integrated over uⱼ is closed-form:
///
///     ℓⱼ = −½ nⱼʷ log 2πσ² − ½ log|Mⱼ| − Qⱼ/(2σ²),   Mⱼ = Λ'Aⱼ*Λ + I,
///     Qⱼ = min_u (rⱼ − ZⱼΛu)'Wⱼ*(rⱼ − ZⱼΛu) + u'u = ξ'(Cⱼ* − Bⱼ*'ΛMⱼ⁻¹Λ'Bⱼ*)ξ,  ξ = [−β; 1],
///
/// nⱼʷ = Σᵢ w*ᵢ and Aⱼ* = cⱼAⱼ etc. The pseudo-log-likelihood is ℓ = Σⱼ wⱼℓⱼ. Given θ it is
/// maximised by β̂ = the generalised least squares of S = Σⱼ wⱼ(Cⱼ* − Gⱼ'Gⱼ), Gⱼ = Lⱼ⁻¹Λ'Bⱼ*
/// (LⱼLⱼ' = Mⱼ), and σ̂² = R²/Nʷ with R² the residual of that least squares and Nʷ = Σⱼ wⱼnⱼʷ; the
/// profiled −2ℓ is Nʷ(1 + log(2πR²/Nʷ)) + Σⱼ wⱼ log|Mⱼ|. With all weights 1 it is lme4's ML
/// deviance. REML has no accepted pseudo-likelihood version: only ML is offered.
///
/// Three levels (pupils i in schools j in districts k, weights wᵢ|ⱼ, wⱼ|ₖ, wₖ): a school's
/// integral over its effects uⱼ leaves, given the district's effects vₖ, a Gaussian factor whose
/// power wⱼ|ₖ* (the level-2 weights scaled within the district as the level-1 ones are within a
/// school) is again Gaussian in vₖ, so the district's integral is closed-form too: the schools'
/// Schur complements of [Zᵥ X y] after eliminating uⱼ, weighted by wⱼ|ₖ* and added, are a
/// district's cross-products, from which vₖ is eliminated as uⱼ was (`eliminate`).
struct PseudoLikelihood {
    let sums: ClusterCrossProducts
    let factor: RelativeCovarianceFactor
    /// cⱼ (level-1 scaling, per cluster of the finest grouping).
    let scale: [Double]
    /// The top-level clusters (schools; districts with three levels), each one's weight and, with
    /// three levels, its schools and the scaled level-2 weight of each school.
    private(set) var topWeight: [Double]
    let members: [[Int]]
    let memberWeight: [Double]
    /// Nʷ = Σ (top weight × scaled level-2 weight × cⱼΣᵢwᵢ).
    private(set) var weightedCount: Double
    /// Random effects per school (dU) and per district (dV; 0 with two levels).
    let dU: Int
    let dV: Int

    /// `parentDimension`: the random effects of the coarser grouping (three levels; its terms
    /// come last in `sums.terms`), and `parents` its number of levels.
    /// Threads the clusters are worked on.
    let threads: Int

    init(_ sums: ClusterCrossProducts, scaling: WeightScaling, parentDimension: Int = 0, parents: Int = 0, threads: Int = 1) {
        self.sums = sums
        self.threads = max(1, threads)
        factor = RelativeCovarianceFactor(terms: sums.terms)
        let c = (0..<sums.clusters).map { scaling.factor(count: sums.count[$0], sum: sums.sumW[$0], sumOfSquares: sums.sumW2[$0]) }
        scale = c
        dV = parentDimension
        dU = sums.d - parentDimension
        if parents > 0 {
            var m = [[Int]](repeating: [], count: parents)
            for j in 0..<sums.clusters where sums.count[j] > 0 { m[sums.parent[j]].append(j) }
            members = m
            var mw = [Double](repeating: 0, count: sums.clusters)
            topWeight = m.map { $0.first.map { sums.weight3[$0] } ?? 0 }
            for schools in m where !schools.isEmpty {
                let w = schools.map { sums.weight2[$0] }
                let c2 = scaling.factor(count: Double(w.count), sum: w.reduce(0, +), sumOfSquares: w.reduce(0) { $0 + $1 * $1 })
                for j in schools { mw[j] = c2 * sums.weight2[j] }
            }
            memberWeight = mw
        } else {
            members = (0..<sums.clusters).map { [$0] }
            topWeight = sums.weight2
            memberWeight = Array(repeating: 1, count: sums.clusters)
        }
        weightedCount = 0
        weightedCount = countWeights()
    }

    private func countWeights() -> Double {
        var n = 0.0
        for (k, schools) in members.enumerated() { for j in schools { n += topWeight[k] * memberWeight[j] * scale[j] * sums.sumW[j] } }
        return n
    }

    /// The same pseudo-likelihood with each top-level cluster's weight multiplied by a factor (a replicate's).
    func reweighted(_ factors: [Double]) -> PseudoLikelihood {
        var copy = self
        copy.topWeight = zip(topWeight, factors).map { $0 * $1 }
        copy.weightedCount = copy.countWeights()
        return copy
    }

    /// The variance components at (θ, σ²): σ²(T_kT_k')'s variances then covariances per term (lme4's VarCorr order), then σ².
    func varianceComponents(theta: [Double], sigma2: Double) -> [Double] {
        var out: [Double] = []
        for k in factor.terms.indices {
            let d = factor.terms[k].dimension, tk = factor.template(k, theta: theta)
            func cov(_ a: Int, _ b: Int) -> Double { (0..<d).reduce(0.0) { $0 + tk[a + $1 * d] * tk[b + $1 * d] } * sigma2 }
            for a in 0..<d { out.append(cov(a, a)) }
            for b in 0..<d { for a in (b + 1)..<max(b + 1, d) { out.append(cov(a, b)) } }
        }
        return out + [sigma2]
    }

    var d: Int { sums.d }
    var p1: Int { sums.p1 }
    var weight: [Double] { topWeight }

    /// Λ for one cluster: blockdiag(T_k), d × d column-major lower triangular.
    func lambda(_ theta: [Double]) -> [Double] {
        var l = [Double](repeating: 0, count: d * d)
        var o = 0
        for (k, t) in sums.terms.enumerated() {
            let pk = t.dimension, tk = factor.template(k, theta: theta)
            for col in 0..<pk { for row in col..<pk { l[(o + row) + (o + col) * d] = tk[row + col * pk] } }
            o += pk
        }
        return l
    }

    /// One cluster at θ: Λ'A*Λ + I's Cholesky factor L (lower, column-major) and log|M| (two levels).
    private func clusterFactor(_ j: Int, lambda: [Double]) -> (l: [Double], logDet: Double)? {
        let a = sums.aOf(j).map { $0 * scale[j] }
        var m = Dense.multiply(Dense.transpose(lambda, d, d), Dense.multiply(a, lambda, d, d, d), d, d, d)
        for i in 0..<d { m[i + i * d] += 1 }
        guard let l = Dense.lowerCholesky(m, d) else { return nil }
        return (l, 2 * (0..<d).reduce(0.0) { $0 + log(l[$1 + $1 * d]) })
    }

    /// The random effects of the first `dim` rows of a symmetric matrix [[A, B], [B', C]] (order
    /// dim + q, column-major) integrated out with relative factor Λ (dim × dim): the Schur
    /// complement C − G'G (q × q), G = L⁻¹Λ'B with LL' = Λ'AΛ + I, and log|Λ'AΛ + I|.
    static func eliminate(_ m: [Double], dim: Int, q: Int, lambda: [Double]) -> (schur: [Double], logDet: Double)? {
        let e = dim + q
        var c = [Double](repeating: 0, count: q * q)
        for col in 0..<q { for row in 0..<q { c[row + col * q] = m[(dim + row) + (dim + col) * e] } }
        guard dim > 0 else { return (c, 0) }
        var a = [Double](repeating: 0, count: dim * dim), b = [Double](repeating: 0, count: dim * q)
        for col in 0..<dim { for row in 0..<dim { a[row + col * dim] = m[row + col * e] } }
        for col in 0..<q { for row in 0..<dim { b[row + col * dim] = m[row + (dim + col) * e] } }
        let lt = Dense.transpose(lambda, dim, dim)
        var mm = Dense.multiply(lt, Dense.multiply(a, lambda, dim, dim, dim), dim, dim, dim)
        for i in 0..<dim { mm[i + i * dim] += 1 }
        guard let l = Dense.lowerCholesky(mm, dim) else { return nil }
        let g = Dense.solveLower(l, dim, Dense.multiply(lt, b, dim, dim, q), q)
        for col in 0..<q { for row in 0..<q {
            var gg = 0.0
            for t in 0..<dim { gg += g[t + row * dim] * g[t + col * dim] }
            c[row + col * q] -= gg
        } }
        return (c, 2 * (0..<dim).reduce(0.0) { $0 + log(l[$1 + $1 * dim]) })
    }

    /// Each top-level cluster at θ, unweighted by its own weight: its Schur complement of [X y]
    /// ((p+1) × (p+1), cluster after cluster), its log-determinant and its Nʷ share; nil where a
    /// Cholesky fails. The clusters are independent: blocks of them run on `threads` threads, and
    /// each result is the same whatever thread computed it.
    func topClusters(_ theta: [Double]) -> (schur: [Double], logDet: [Double], count: [Double])? {
        let lam = lambda(theta)
        var lamU = [Double](repeating: 0, count: dU * dU), lamV = [Double](repeating: 0, count: dV * dV)
        for col in 0..<dU { for row in 0..<dU { lamU[row + col * dU] = lam[row + col * d] } }
        for col in 0..<dV { for row in 0..<dV { lamV[row + col * dV] = lam[(dU + row) + (dU + col) * d] } }
        let e = d + p1, eV = dV + p1, n = members.count, q = p1 * p1
        var schurs = [Double](repeating: 0, count: n * q), logDets = [Double](repeating: 0, count: n), counts = logDets
        let failed = ManagedFlag()
        let blockSize = 2048, blocks = (n + blockSize - 1) / blockSize
        schurs.withUnsafeMutableBufferPointer { schurOut in
            logDets.withUnsafeMutableBufferPointer { logDetOut in
                counts.withUnsafeMutableBufferPointer { countOut in
                    let (so, lo, co) = (schurOut, logDetOut, countOut)
                    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, blocks))) { worker in
                        var block = worker
                        var m = [Double](repeating: 0, count: e * e)
                        while block < blocks {
                            for k in (block * blockSize)..<min(n, (block + 1) * blockSize) where !members[k].isEmpty {
                                var t = [Double](repeating: 0, count: eV * eV)
                                var logDet = 0.0, count = 0.0
                                for j in members[k] {
                                    let c = scale[j]
                                    // [Z X y]'W*[Z X y] of school j, order d + p + 1, with u's columns first.
                                    let a = sums.aOf(j), b = sums.bOf(j), cc = sums.cOf(j)
                                    for col in 0..<d { for row in 0..<d { m[row + col * e] = c * a[a.startIndex + row + col * d] } }
                                    for col in 0..<p1 { for row in 0..<d {
                                        let x = c * b[b.startIndex + row + col * d]
                                        m[row + (d + col) * e] = x
                                        m[(d + col) + row * e] = x
                                    } }
                                    for col in 0..<p1 { for row in 0..<p1 { m[(d + row) + (d + col) * e] = c * cc[cc.startIndex + row + col * p1] } }
                                    guard let (schur, ld) = Self.eliminate(m, dim: dU, q: eV, lambda: lamU) else { failed.set(); return }
                                    let w = memberWeight[j]
                                    for i in 0..<(eV * eV) { t[i] += w * schur[i] }
                                    logDet += w * ld
                                    count += w * c * sums.sumW[j]
                                }
                                guard let (schur, ld) = Self.eliminate(t, dim: dV, q: p1, lambda: lamV) else { failed.set(); return }
                                for i in 0..<q { so[k * q + i] = schur[i] }
                                lo[k] = logDet + ld
                                co[k] = count
                            }
                            block += max(1, min(threads, blocks))
                        }
                    }
                }
            }
        }
        return failed.isSet ? nil : (schurs, logDets, counts)
    }

    struct Evaluation {
        var beta: [Double]
        /// σ̂² = R²/Nʷ, R² the residual of the least squares of S.
        var sigma2: Double
        /// −2ℓ at θ with β and σ² profiled out.
        var deviance: Double
    }

    /// β̂, σ̂² and −2ℓ at θ; nil where a cluster's or S's Cholesky fails.
    func evaluate(_ theta: [Double]) -> Evaluation? {
        guard let top = topClusters(theta) else { return nil }
        var s = [Double](repeating: 0, count: p1 * p1)
        var logDet = 0.0
        let q = p1 * p1
        for k in topWeight.indices {
            let w = topWeight[k]
            for i in 0..<q { s[i] += w * top.schur[k * q + i] }
            logDet += w * top.logDet[k]
        }
        guard let r = DenseCholesky.upper(s, order: p1) else { return nil }
        let p = p1 - 1
        let rss = r[p1 * p1 - 1] * r[p1 * p1 - 1]
        guard rss > 0, weightedCount > 0 else { return nil }
        let beta = DenseCholesky.solveUpper(r, leading: p1, order: p, Array(r[(p * p1)..<(p * p1 + p)]))
        let n = weightedCount
        return Evaluation(beta: beta, sigma2: rss / n,
                          deviance: n * (1 + log(2 * Double.pi * rss / n)) + logDet)
    }

    /// Each top-level cluster's ℓ (without its weight) at (β, θ, σ²): −½ n log 2πσ² − ½ log-det − ξ'Sξ/(2σ²).
    func topLogLikelihoods(beta: [Double], theta: [Double], sigma2: Double) -> [Double] {
        guard let top = topClusters(theta) else { return Array(repeating: -.infinity, count: members.count) }
        let xi = beta.map { -$0 } + [1], size = p1 * p1
        return members.indices.map { k in
            var q = 0.0
            for col in 0..<p1 { for row in 0..<p1 { q += xi[row] * top.schur[k * size + row + col * p1] * xi[col] } }
            return -0.5 * top.count[k] * log(2 * Double.pi * sigma2) - 0.5 * top.logDet[k] - q / (2 * sigma2)
        }
    }

    /// −2ℓ at θ with β and σ² profiled out; +∞ where undefined.
    func deviance(_ theta: [Double]) -> Double { evaluate(theta)?.deviance ?? .infinity }

    /// Each cluster's ℓⱼ (without its weight wⱼ) at (β, θ, σ²), and its score, the gradient of ℓⱼ
    /// with respect to ψ = (β, θ, σ²), row by row (clusters × (p + θ + 1), row-major).
    ///
    /// ∂ℓⱼ/∂β = [(Cⱼ* − Bⱼ*'ΛMⱼ⁻¹Λ'Bⱼ*)ξ]_X / σ²;  ∂ℓⱼ/∂σ² = −nⱼʷ/(2σ²) + Qⱼ/(2σ⁴);  for θᵢ the
    /// entry (α, β') of Λ: ∂ℓⱼ/∂θᵢ = −(Mⱼ⁻¹Λ'Aⱼ*)[β', α] + ûⱼ[β'] (gⱼ − Aⱼ*Λûⱼ)[α] / σ², with
    /// gⱼ = Bⱼ*ξ = Zⱼ'Wⱼ*rⱼ and ûⱼ = Mⱼ⁻¹Λ'gⱼ.
    func clusterScores(beta: [Double], theta: [Double], sigma2: Double) -> (logLikelihood: [Double], scores: [Double]) {
        let p = p1 - 1, m = theta.count, width = p + m + 1
        let lam = lambda(theta), lamT = Dense.transpose(lam, d, d)
        let xi = beta.map { -$0 } + [1]
        // Where each θ entry sits in a cluster's Λ.
        var position: [(row: Int, col: Int)] = []
        var o = 0
        for t in sums.terms {
            for col in 0..<t.dimension { for row in col..<t.dimension { position.append((o + row, o + col)) } }
            o += t.dimension
        }
        var logLik = [Double](repeating: 0, count: sums.clusters)
        var scores = [Double](repeating: 0, count: sums.clusters * width)
        for j in 0..<sums.clusters where sums.count[j] > 0 {
            let c = scale[j]
            let cs = sums.cOf(j).map { $0 * c }, bs = sums.bOf(j).map { $0 * c }, a = sums.aOf(j).map { $0 * c }
            let nw = c * sums.sumW[j]
            var cxi = [Double](repeating: 0, count: p1)
            for col in 0..<p1 { for row in 0..<p1 { cxi[row] += cs[row + col * p1] * xi[col] } }
            var q = zip(xi, cxi).reduce(0.0) { $0 + $1.0 * $1.1 }
            var logDet = 0.0
            var betaScore = Array(cxi[0..<p])
            if d > 0 {
                guard let (l, ld) = clusterFactor(j, lambda: lam) else { logLik[j] = -.infinity; continue }
                logDet = ld
                let g = Dense.multiply(bs, xi, d, p1, 1)                          // Z'W*r
                let u = Dense.solveCholesky(l, d, Dense.multiply(lamT, g, d, d, 1))   // û
                let lu = Dense.multiply(lam, u, d, d, 1)                          // Λû
                q -= zip(g, lu).reduce(0.0) { $0 + $1.0 * $1.1 }
                // β: subtract B*'Λû.
                for a0 in 0..<p { for t in 0..<d { betaScore[a0] -= bs[t + a0 * d] * lu[t] } }
                let alu = Dense.multiply(a, lu, d, d, 1)
                let k = Dense.solveCholesky(l, d, Dense.multiply(lamT, a, d, d, d), columns: d)   // M⁻¹Λ'A*
                for (i, pos) in position.enumerated() {
                    scores[j * width + p + i] = -k[pos.col + pos.row * d] + u[pos.col] * (g[pos.row] - alu[pos.row]) / sigma2
                }
            }
            for a0 in 0..<p { scores[j * width + a0] = betaScore[a0] / sigma2 }
            scores[j * width + p + m] = -nw / (2 * sigma2) + q / (2 * sigma2 * sigma2)
            logLik[j] = -0.5 * nw * log(2 * Double.pi * sigma2) - 0.5 * logDet - q / (2 * sigma2)
        }
        return (logLik, scores)
    }
}

/// A flag any thread may raise.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    func set() { lock.lock(); raised = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return raised }
}
