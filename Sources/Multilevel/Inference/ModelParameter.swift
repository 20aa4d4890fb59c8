import Foundation

/// One parameter a reader wants an interval for: a random-effect standard deviation or
/// correlation, the residual standard deviation, or a fixed effect (lme4's `.sig01`, …,
/// `.sigma`, then the coefficients, in that order).
public struct ModelParameter: Sendable, Equatable {
    /// `variance`: a residual-variance parameter (`--residual-variance`): a group's SD ratio to
    /// the first group's, or varExp's / varPower's exponent.
    public enum Kind: String, Sendable { case sd, cor, sigma, beta, variance }
    public let kind: Kind
    /// For sd and cor: the group and effects as in `varcorr`; for beta: the coefficient's name.
    public let group: String?
    public let var1: String?
    public let var2: String?
    public let name: String?
    public let estimate: Double

    /// A readable label: `sd((Intercept)|Subject)`, `cor((Intercept),Days|Subject)`, `sigma`, `Days`.
    public var label: String {
        switch kind {
        case .sd: return "sd(\(var1 ?? "")|\(group ?? ""))"
        case .cor: return "cor(\(var1 ?? ""),\(var2 ?? "")|\(group ?? ""))"
        case .sigma: return "sigma"
        case .beta: return name ?? ""
        case .variance: return group.map { "ratio(\(name ?? "")|\($0))" } ?? "\(name ?? "")(\(var1 ?? ""))"
        }
    }

    /// The parameters of a fit, in lme4's order: each term's SDs and correlations in the order
    /// of θ (the lower triangle of T_k by columns), σ, then β.
    /// A fit with `--residual-variance` adds its estimated variance parameters last.
    static func all(of fit: FitResult) -> [ModelParameter] {
        parameters(terms: fit.terms, fixedNames: fit.fixedNames, values: values(fit.varcorr, fit.sigma, fit.beta))
            + (fit.residualVariance.map(residualVarianceParameters) ?? [])
    }

    /// The estimated parameters of a residual-variance function: the SD ratio of every group
    /// but the first (varIdent), or the exponent (varExp, varPower).
    static func residualVarianceParameters(_ v: ResidualVarianceFit) -> [ModelParameter] {
        if case .groups(let g) = v.model {
            return zip(v.names, v.values).dropFirst().map {
                ModelParameter(kind: .variance, group: g, var1: nil, var2: nil, name: $0, estimate: $1)
            }
        }
        return [ModelParameter(kind: .variance, group: nil, var1: v.model.column, var2: nil, name: v.names[0], estimate: v.values[0])]
    }

    /// The names in `all(of:)` order with the values given.
    /// Without `sigma` (a GLMM's), the list has no σ and `v` holds none.
    static func parameters(terms: [RandomEffectsTerm], fixedNames: [String], values v: [Double], sigma: Bool = true) -> [ModelParameter] {
        var out: [ModelParameter] = []
        for (t, group) in zip(terms, FitResult.uniqueGroupNames(terms)) {
            for col in 0..<t.dimension { for row in col..<t.dimension {
                let kind: Kind = row == col ? .sd : .cor
                out.append(ModelParameter(kind: kind, group: group, var1: t.effects[col],
                                          var2: row == col ? nil : t.effects[row], name: nil, estimate: v[out.count]))
            } }
        }
        if sigma { out.append(ModelParameter(kind: .sigma, group: nil, var1: nil, var2: nil, name: nil, estimate: v[out.count])) }
        for name in fixedNames { out.append(ModelParameter(kind: .beta, group: nil, var1: nil, var2: nil, name: name, estimate: v[out.count])) }
        return out
    }

    /// The parameter values, in `all(of:)` order, from lme4's VarCorr table, σ and β.
    static func values(_ varcorr: [VarCorrEntry], _ sigma: Double?, _ beta: [Double]) -> [Double] {
        // VarCorr lists a term's variances, then its covariances (row-major upper); θ's order
        // is the lower triangle by columns: sd_1, cor_21, cor_31, …, sd_2, cor_32, …
        var out: [Double] = []
        var i = 0
        while i < varcorr.count, varcorr[i].group != "Residual" {
            let group = varcorr[i].group
            let entries = varcorr[i...].prefix { $0.group == group }
            let sds = entries.filter { $0.var2 == nil }
            for (col, sd) in sds.enumerated() {
                out.append(sd.sdcor)
                for row in (col + 1)..<max(col + 1, sds.count) {
                    let cor = entries.first { $0.var1 == sd.var1 && $0.var2 == sds[row].var1 }
                    out.append(cor?.sdcor ?? .nan)
                }
            }
            i += entries.count
        }
        return out + (sigma.map { [$0] } ?? []) + beta
    }
}

/// A confidence interval for one parameter.
public struct ParameterInterval: Sendable, Equatable {
    public let parameter: ModelParameter
    public let lower: Double
    public let upper: Double
}
