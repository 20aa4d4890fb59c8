import Foundation

/// The linearisation (Huber–White, "sandwich") variance of estimates that solve Σⱼ wⱼ sⱼ(ψ) = 0,
/// as survey software computes it (Stata's `vce(linearized)`, R's `survey::svyglm`, Binder 1983):
///
///     V = H⁻¹ J H⁻¹,   H = −∂²ℓ/∂ψ∂ψ',   J = Σ_h n_h/(n_h − 1) Σ_{i ∈ h} (z_hi − z̄_h)(z_hi − z̄_h)',
///
/// with z_hi the total of wⱼsⱼ over the clusters of PSU i of stratum h, z̄_h their mean, and n_h
/// the PSUs of stratum h: PSUs drawn with replacement within strata, no finite-population
/// correction. One stratum and the clusters as PSUs is `vce(cluster)`'s estimator.
enum SandwichVariance {
    /// J from the clusters' weighted scores (clusters × m, row-major), each cluster's PSU and
    /// each PSU's stratum. A stratum with a single PSU has no variance of its own to estimate:
    /// `singlePSU` says what it contributes (Stata's `singleunit()`): an error, nothing
    /// (`certainty`), or its deviation from the mean of all PSUs (`centered`).
    ///
    /// With `fpc` (one value per stratum, Stata's `fpc()`), each stratum's part is multiplied by
    /// 1 − n_h/N_h: the value is the stratum's sampling fraction of PSUs when at most 1, else its
    /// number N_h of PSUs in the population.
    static func meat(weightedScores: [Double], width m: Int, psuOfCluster: [Int], psuCount: Int,
                     stratumOfPSU: [Int], strataLabels: [String], singlePSU: SinglePSU = .fail,
                     fpc: [Double]? = nil) throws -> [Double] {
        var z = [Double](repeating: 0, count: psuCount * m)
        for (j, i) in psuOfCluster.enumerated() where i >= 0 {
            for a in 0..<m { z[i * m + a] += weightedScores[j * m + a] }
        }
        let strata = (stratumOfPSU.max() ?? -1) + 1
        var members = [[Int]](repeating: [], count: strata)
        for (i, h) in stratumOfPSU.enumerated() { members[h].append(i) }
        var grandMean = [Double](repeating: 0, count: m)
        for i in 0..<psuCount { for a in 0..<m { grandMean[a] += z[i * m + a] / Double(psuCount) } }
        var meat = [Double](repeating: 0, count: m * m)
        for (h, psus) in members.enumerated() where !psus.isEmpty {
            var mean = [Double](repeating: 0, count: m)
            var f = 1.0
            if psus.count == 1 {
                switch singlePSU {
                case .fail:
                    let name = strataLabels.count > 1 ? "stratum '\(strataLabels[h])' has" : "the design has"
                    throw InputError("\(name) a single primary sampling unit: the linearised variance needs at least two PSUs in every "
                        + "stratum (or --single-psu certainty|centered)")
                case .certainty: continue
                case .centered: mean = grandMean
                }
            } else {
                for i in psus { for a in 0..<m { mean[a] += z[i * m + a] } }
                for a in 0..<m { mean[a] /= Double(psus.count) }
                f = Double(psus.count) / Double(psus.count - 1)
            }
            if let fpc {
                let value = fpc[h], n = Double(psus.count)
                guard value <= 1 || value >= n else {
                    throw InputError("the finite-population correction of stratum '\(strataLabels[h])' is \(rNumber(value)), fewer PSUs than "
                        + "the \(psus.count) sampled: give the population's number of PSUs, or a sampling fraction")
                }
                f *= 1 - (value <= 1 ? value : n / value)
            }
            for i in psus {
                for b in 0..<m {
                    let zb = z[i * m + b] - mean[b]
                    for a in 0..<m { meat[a + b * m] += f * (z[i * m + a] - mean[a]) * zb }
                }
            }
        }
        return meat
    }

    /// H⁻¹ J H⁻¹ (all m × m, column-major); nil if H is not positive definite.
    static func covariance(bread h: [Double], meat j: [Double], order m: Int) -> [Double]? {
        guard m > 0 else { return [] }
        guard let r = DenseCholesky.upper(h, order: m) else { return nil }
        let hInverse = DenseCholesky.inverseOfCrossProduct(r, leading: m, order: m)
        let left = Dense.multiply(hInverse, j, m, m, m)
        return Dense.multiply(left, hInverse, m, m, m)
    }

    /// The Jacobian of `f` (n outputs) at x by central differences with steps `steps`: n × x.count, column-major.
    static func jacobian(_ f: ([Double]) -> [Double], at x: [Double], steps: [Double]) -> [Double] {
        var columns: [Double] = []
        for i in x.indices {
            var up = x, down = x
            up[i] += steps[i]
            down[i] -= steps[i]
            let fu = f(up), fd = f(down)
            columns += zip(fu, fd).map { ($0 - $1) / (2 * steps[i]) }
        }
        return columns
    }
}
