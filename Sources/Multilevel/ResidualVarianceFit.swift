import Foundation

/// The estimated level-1 variance function of a fit with `--residual-variance`.
public struct ResidualVarianceFit: Sendable {
    public let model: ResidualVarianceModel
    /// nlme's parameters: per group, its SD ratio δ_g to the first group's (the first's 1); or the
    /// exponent t of varExp / varPower.
    public let names: [String]
    public let values: [Double]
    /// How many of them were estimated (δ of all but the first group; t).
    public var estimatedCount: Int { if case .groups = model { return values.count - 1 }; return 1 }
    /// Rows per group (varIdent).
    public let counts: [Int]
    /// The likelihood-ratio test of a constant residual variance (nlme's `anova(constant, this)`):
    /// twice the difference of the criteria (REML or ML: the fixed effects are the same), its df
    /// and p from χ².
    public internal(set) var constantTest: (chiSquare: Double, df: Int, p: Double)?
}

/// Fits with a level-1 variance that is not constant (`ResidualVarianceModel`): the criterion
/// profiled over the variance parameters ρ (ρ_g = log δ_g, or t) is minimised by BOBYQA, each
/// evaluation a whole fit of θ (Newton, from the cross-products) at ρ's weights.
///
/// - `~ 1 | g`: each group's cross-products are accumulated once (one pass, on one pattern); at
///   ρ the model's are Σ_g δ_g⁻² (group g's), so no evaluation touches the rows.
/// - `~ x`: the weights w_i = s(x_i; t)⁻² differ in every row, so each evaluation re-reads the rows.
enum HeteroscedasticModel {
    static func fit(_ frame: ModelFrame, options: FitOptions) throws -> FitResult {
        guard let model = frame.formula.residualVariance else { preconditionFailure("no residual-variance model") }
        var inner = options
        inner.ddf = .none
        inner.trace = nil
        inner.solver = .direct
        let evaluate: ([Double]) throws -> FitResult
        let names: [String], counts: [Int], dimension: Int
        switch model {
        case .groups(let g):
            let parts = try frame.groupCrossProducts(threads: options.threads)
            names = frame.residualVarianceLevels!
            counts = parts.map(\.rows)
            if let empty = counts.firstIndex(of: 0) {
                throw InputError("--residual-variance: level '\(names[empty])' of \(g) has no complete rows")
            }
            guard parts.count >= 2 else {
                throw InputError("--residual-variance \"~ 1 | \(g)\": \(g) has one level in the complete rows; a variance per level needs two")
            }
            dimension = parts.count - 1
            evaluate = { rho in
                let weights = [1] + rho.map { exp(-2 * $0) }
                return try LinearMixedModel.fit(CrossProducts.combining(parts, weights: weights), options: inner)
            }
        case .exponential, .power:
            if case .power = model { names = ["power"] } else { names = ["expon"] }
            counts = []
            dimension = 1
            evaluate = { rho in try LinearMixedModel.fit(frame.crossProducts(threads: options.threads, residualVarianceParameter: rho[0]),
                                                         options: inner) }
        }
        // The first evaluation fixes the factorisation for the rest.
        let constant = try evaluate([Double](repeating: 0, count: dimension))
        inner.factorization = constant.factorization
        var summary = OptimizerSummary()
        summary.xtolRel = 0
        summary.xtolAbs = 1e-7
        summary.ftolAbs = 1e-12
        var failure: Error?
        let (rho, _) = try Optimizer.minimize({ rho in
            do {
                let objective = try evaluate(rho).objective
                options.trace?(0, rho, objective)
                return objective
            } catch {
                failure = failure ?? error
                return .infinity
            }
        }, start: [Double](repeating: 0, count: dimension), lower: [Double](repeating: -20, count: dimension),
           upper: [Double](repeating: 20, count: dimension), initialStep: [Double](repeating: 0.1, count: dimension), summary: &summary)
        var result: FitResult
        do {
            result = try evaluate(rho)
        } catch {
            throw failure ?? error
        }
        var optimizer = result.optimizer
        optimizer.algorithm += " (θ), in NLOPT_LN_BOBYQA over the residual variance (\(summary.evaluations) fits)"
        result.optimizer = optimizer
        let values: [Double]
        if case .groups = model { values = [1] + rho.map { exp($0) } } else { values = rho }
        var variance = ResidualVarianceFit(model: model, names: names, values: values, counts: counts)
        let chiSquare = max(0, constant.objective - result.objective)
        variance.constantTest = (chiSquare, dimension, ChiSquareDistribution.upperTail(chiSquare, df: Double(dimension)))
        result.residualVariance = variance
        return result
    }
}
