import Foundation

/// The variance of a sampling-weighted fit from replicate weights (jackknife, BRR, Fay's BRR), as
/// the surveys that ship them prescribe (`ReplicateMethod`), instead of the linearisation.
enum ReplicateVariance {
    /// The replicate-weights covariance of (β, variance components): each replicate reweights the
    /// top-level clusters by its factors and is refitted from the same cross-products, from θ̂
    /// (no data are read again); the replicates are spread over every thread and rank
    /// (`JobDistribution`), and V = c Σ_r (est_r − est)(est_r − est)' (`ReplicateMethod`).
    static func covariance(_ pml: PseudoLikelihood, theta: [Double], estimate: [Double], topOf: [Int],
                           top: RandomEffectsTerm, design: SurveyDesign, options: FitOptions) throws -> [Double] {
        let sums = pml.sums, replicates = sums.replicates, tops = pml.topWeight.count
        // Each top-level cluster's factors (a district's from its schools, which must agree).
        var factors = [Double](repeating: .nan, count: tops * replicates)
        for j in 0..<sums.clusters where sums.count[j] > 0 {
            let k = topOf[j]
            for q in 0..<replicates {
                let a = factors[k * replicates + q], b = sums.replicateFactor[j * replicates + q]
                if a.isNaN { factors[k * replicates + q] = b } else if !b.isNaN && !ClusterCrossProducts.sameFactor(a, b) {
                    throw InputError("the replicate weight in column '\(design.replicateWeights[q])' reweights the clusters of \(top.group) "
                        + "'\(top.levels[k])' differently (\(rNumber(a)) and \(rNumber(b)) times the full-sample weight): replicates "
                        + "must reweight whole top-level clusters")
                }
            }
        }
        for i in factors.indices where factors[i].isNaN { factors[i] = 1 }   // clusters of weight 0
        let factorsOfTop = factors
        let lower = pml.factor.lowerBounds, n = estimate.count
        let work: @Sendable (Int, Int) -> [UInt8] = { q, _ in
            let replicate = pml.reweighted((0..<tops).map { factorsOfTop[$0 * replicates + q] })
            var summary = OptimizerSummary()
            var t = theta
            if !theta.isEmpty {
                t = (try? Optimizer.minimize({ replicate.deviance($0) }, start: theta, lower: lower,
                                             initialStep: Optimizer.localSteps(theta, floor: theta.map { _ in 0.1 }), summary: &summary).theta) ?? []
            }
            var w = ByteWriter()
            if t.count == theta.count, let e = replicate.evaluate(t) {
                w.doubles(e.beta + replicate.varianceComponents(theta: t, sigma2: e.sigma2))
            } else {
                w.doubles(Array(repeating: .nan, count: n))
            }
            return w.bytes
        }
        var results = [[Double]](repeating: [], count: replicates)
        try JobDistribution(communicator: options.communicator, threads: options.threads).run(jobs: Array(0..<replicates), work: work) { q, bytes in
            var r = ByteReader(bytes)
            results[q] = r.doubles()
        }
        var all = ByteWriter()
        for r in results { all.doubles(r) }
        var reader = ByteReader(options.communicator.broadcast(options.communicator.isRoot ? all.bytes : [], root: 0))
        results = (0..<replicates).map { _ in reader.doubles() }
        if let q = results.firstIndex(where: { $0.contains { !$0.isFinite } }) {
            throw InputError("replicate '\(design.replicateWeights[q])' could not be fitted (its pseudo-likelihood is undefined: "
                + "a replicate weight may leave too few clusters)")
        }
        let c = design.replicateMethod.scale(replicates: replicates, fayK: design.fayK)
        var v = [Double](repeating: 0, count: n * n)
        for r in results {
            for b in 0..<n { for a in 0..<n { v[a + b * n] += c * (r[a] - estimate[a]) * (r[b] - estimate[b]) } }
        }
        return v
    }
}
