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
    /// varIdent's ρ̂ = log δ̂ of every group but the first: where a refit's search starts.
    var logRatios: [Double] { values.dropFirst().map { log($0) } }
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
    /// The most levels of a varIdent factor.
    static let maxGroups = 20
    /// The box ρ is searched in: a ratio δ = e^ρ within e^±20, an exponent t within ±20.
    static let rhoBound = 20.0

    /// BOBYQA over ρ from `start` with first steps `step`, tight enough that the criterion's
    /// optimum is found to its rounding (xtol 1e-7 on ρ, ftol 1e-12): the fit's search and each
    /// profile point's.
    /// A varIdent model's cross-products at ρ = log δ (the first group's δ is 1): Σ_g δ_g⁻²
    /// (group g's `parts`).
    static func combined(_ parts: [CrossProducts], rho: [Double]) -> CrossProducts {
        CrossProducts.combining(parts, weights: [1] + rho.map { exp(-2 * $0) })
    }

    static func searchRho(_ f: @escaping ([Double]) -> Double, start: [Double], step: Double,
                          summary: inout OptimizerSummary) throws -> (rho: [Double], value: Double) {
        summary.xtolRel = 0
        summary.xtolAbs = 1e-7
        summary.ftolAbs = 1e-12
        let (rho, value) = try Optimizer.minimize(f, start: start, lower: start.map { _ in -rhoBound },
                                                  upper: start.map { _ in rhoBound }, initialStep: start.map { _ in step },
                                                  summary: &summary)
        return (rho, value)
    }

    static func fit(_ frame: ModelFrame, options: FitOptions) throws -> FitResult {
        guard let model = frame.formula.residualVariance else { preconditionFailure("no residual-variance model") }
        switch model {
        case .groups(let g):
            // Levels come from the complete rows, so every group has some.
            let names = frame.residualVarianceLevels!
            guard names.count >= 2 else {
                throw InputError("--residual-variance \"~ 1 | \(g)\": \(g) has one level in the complete rows; a variance per level needs two")
            }
            // Each level holds a copy of the cross-products and is a parameter of BOBYQA's.
            guard names.count <= maxGroups else {
                throw InputError("--residual-variance \"~ 1 | \(g)\": \(g) has \(names.count) levels; a residual variance per level is "
                    + "for a handful of them (at most \(maxGroups)): a grouping with many levels is a random effect")
            }
            let parts = try frame.groupCrossProducts(threads: options.threads)
            return try fitGroups(parts, model: model, names: names, options: options, testConstant: true)
        case .exponential, .power:
            let names: [String]
            if case .power = model { names = ["power"] } else { names = ["expon"] }
            return try profiled(model, names: names, counts: [], start: [0], options: options, testConstant: true) { rho in
                try frame.crossProducts(threads: options.threads, residualVarianceParameter: rho[0])
            }
        }
    }

    /// The varIdent fit from the groups' cross-products `parts` (ρ from `start`, else 0).
    static func fitGroups(_ parts: [CrossProducts], model: ResidualVarianceModel, names: [String], options: FitOptions,
                          start: [Double]? = nil, testConstant: Bool) throws -> FitResult {
        var result = try profiled(model, names: names, counts: parts.map(\.rows), start: start ?? Array(repeating: 0, count: parts.count - 1),
                                  options: options, testConstant: testConstant) { rho in combined(parts, rho: rho) }
        let kept = result.fixedNames.compactMap { parts[0].fixedNames.firstIndex(of: $0) }
        result.residualVarianceParts = kept.count == parts[0].fixedCount ? parts : parts.map { $0.selectingFixed(kept) }
        return result
    }

    /// Minimises the criterion of the fit to `crossProducts(ρ)` over ρ (BOBYQA, from `start`),
    /// each evaluation a whole fit of θ; with `testConstant`, also fits ρ = 0 for the test.
    private static func profiled(_ model: ResidualVarianceModel, names: [String], counts: [Int], start: [Double],
                                 options: FitOptions, testConstant: Bool,
                                 crossProducts: @escaping ([Double]) throws -> CrossProducts) throws -> FitResult {
        var inner = options
        inner.ddf = .none
        inner.trace = nil
        inner.solver = .direct
        let dimension = start.count
        let evaluate = { (rho: [Double]) throws -> FitResult in try LinearMixedModel.fit(crossProducts(rho), options: inner) }
        // The first fit fixes the factorisation for the rest.
        var constant: FitResult?
        if testConstant || inner.factorization == nil {
            let first = try evaluate(testConstant ? Array(repeating: 0, count: dimension) : start)
            inner.factorization = first.factorization
            if testConstant { constant = first }
        }
        var summary = OptimizerSummary()
        var failure: Error?
        var evaluations = 0, movedAway = false
        // The least criterion's fit, which BOBYQA returns the ρ of (`~ x`: not one more pass over the rows).
        var best: (rho: [Double], fit: FitResult)?
        let (rho, _) = try searchRho({ rho in
            do {
                // BOBYQA's first point is often the constant fit's ρ = 0, already made.
                let fit = try constant.flatMap { rho.allSatisfy { $0 == 0 } ? $0 : nil } ?? evaluate(rho)
                evaluations += 1
                if rho != start { movedAway = true }
                if fit.objective < best?.fit.objective ?? .infinity { best = (rho, fit) }
                // --verbose: each fit's θ̂ followed by ρ.
                options.trace?(evaluations, fit.theta + rho, fit.objective)
                return fit.objective
            } catch {
                failure = failure ?? error
                return .infinity
            }
        }, start: start, step: 0.1, summary: &summary)
        // Every point but the start failed: the start is no optimum, and the failure is the answer.
        if let failure, !movedAway { throw failure }
        var result: FitResult
        if let best, best.rho == rho {
            result = best.fit
        } else {
            do {
                result = try evaluate(rho)
            } catch {
                throw failure ?? error
            }
        }
        result.optimizer.algorithm += " (θ), in NLOPT_LN_BOBYQA over the residual variance (\(summary.evaluations) fits)"
        let values: [Double]
        if case .groups = model { values = [1] + rho.map { exp($0) } } else { values = rho }
        var variance = ResidualVarianceFit(model: model, names: names, values: values, counts: counts)
        if let constant {
            let chiSquare = max(0, constant.objective - result.objective)
            variance.constantTest = (chiSquare, dimension, ChiSquareDistribution.upperTail(chiSquare, df: Double(dimension)))
        }
        result.residualVariance = variance
        return result
    }
}
