import Foundation

/// The parametric bootstrap of a varIdent fit (`--residual-variance "~ 1 | g"`), still in
/// cross-product space: group g's rows get residuals of SD σ̂δ̂_g.
///
/// A replicate is y* = Wγ* + ε* with γ* = [σ̂Λ̂u*; β̂] (as `BootstrapSimulator`) and ε*_g ~
/// N(0, σ̂²δ̂_g² I) on group g's rows. Each group's cross-products are those of its rows W_g, so
/// (W_g'ε*_g, ε*_g'ε*_g) is drawn as (σ̂δ̂_g V_g'a_g, σ̂²δ̂_g²(‖a_g‖² + c_g)) from the group's own
/// root V_g'V_g = W_g'W_g (`SemidefiniteCholesky`), a_g normal and c_g ~ χ²(n_g − rank W_g),
/// group after group from the generator of (seed, i). The refit estimates δ again
/// (`HeteroscedasticModel.fitGroups`, from δ̂), so the intervals carry its uncertainty.
final class HeteroscedasticBootstrapSimulator: ReplicateSimulator, @unchecked Sendable {
    let fit: FitResult
    private let parts: [CrossProducts]
    private let roots: [SemidefiniteCholesky]
    private let lambda: RelativeCovarianceFactor
    private let lambdaTemplates: [[Double]]
    let jobThreads: Int

    init(_ fit: FitResult, threads: Int) {
        self.fit = fit
        parts = fit.residualVarianceParts!
        roots = parts.map(SemidefiniteCholesky.init)
        lambda = RelativeCovarianceFactor(terms: fit.terms)
        lambdaTemplates = lambda.templates(fit.theta)
        jobThreads = max(1, threads)
    }

    /// Replicate `index`'s cross-products of each group.
    func groupCrossProducts(replicate index: Int, seed: UInt64) -> [CrossProducts] {
        let q = fit.crossProducts.randomEffectsCount, p = fit.crossProducts.fixedCount
        var (gamma, random) = replicateEffects(fit, lambda: lambda, templates: lambdaTemplates, seed: seed, index: index)
        let ratios = fit.residualVariance!.values
        return parts.indices.map { g in
            let sd = fit.sigma * ratios[g], root = roots[g]
            let a = (0..<(q + p)).map { _ in random.nextNormal() }
            let c = random.nextChiSquare(df: parts[g].rows - root.rank)
            var aa = 0.0
            for j in 0..<(q + p) where root.pivots[j] > 0 { aa += a[j] * a[j] }
            return parts[g].replicate(gamma: gamma, noise: root.transposedRootTimes(a).map { $0 * sd }, noiseSquares: sd * sd * (aa + c))
        }
    }

    func replicate(_ index: Int, seed: UInt64, thread: Int) -> BootstrapReplicate {
        let variance = fit.residualVariance!
        var options = FitOptions(reml: fit.reml, threads: 1)
        options.factorization = fit.factorization
        options.optimizer = fit.optimizerChoice
        guard let refit = try? HeteroscedasticModel.fitGroups(groupCrossProducts(replicate: index, seed: seed), model: variance.model,
                                                              names: variance.names, options: options, start: variance.logRatios,
                                                              testConstant: false),
              let ratios = refit.residualVariance?.values else { return .failed(index, fit) }
        return BootstrapReplicate(index: index, theta: refit.theta, beta: refit.beta, sigma: refit.sigma, deviance: refit.objective,
                                  varianceParameters: Array(ratios.dropFirst()))
    }
}
