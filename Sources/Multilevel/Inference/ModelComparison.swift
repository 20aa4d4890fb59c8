import Foundation

/// Likelihood-ratio comparison of nested models, as lme4's `anova(m0, m1, …)`.
///
/// Every model is fitted by maximum likelihood (lme4's `anova` refits REML fits with ML by
/// default: REML criteria of models with different fixed effects are not comparable), the
/// models are put in order of their number of parameters (ties in the order given), and each
/// is tested against the one before: χ² = 2·max(0, ΔlogLik) on Δnpar degrees of freedom.
///
/// When two neighbours have the same fixed effects and the larger adds variance parameters,
/// the null value of the added variance is on the boundary of the parameter space and the χ²
/// p-value is conservative; the 50:50 mixture of χ²(d−1) and χ²(d) (Self and Liang 1987; Stram
/// and Lee 1994: one added random effect with d − 1 covariances) is given beside it.
public struct ModelComparison: Sendable {
    public struct Row: Sendable {
        /// `m1`, `m2`, … in the order the formulas were given.
        public let name: String
        public let formula: String
        public let npar: Int
        public let aic, bic, logLik, deviance: Double
        /// Against the row before (nil on the first row).
        public let chisq: Double?
        public let df: Int?
        public let p: Double?
        /// The 50:50 mixture p-value when the comparison tests variance parameters at their boundary.
        public let boundaryP: Double?
    }

    public let dataName: String
    public let nobs: Int
    /// The formulas, in the order given (`m1`, `m2`, …).
    public let formulas: [String]
    /// In lme4's printed order (increasing npar).
    public let rows: [Row]
    /// The ML fits of Gaussian models, in the order the formulas were given (empty for GLMMs).
    public let fits: [FitResult]

    /// What the table needs of one fitted model.
    struct Fitted {
        let formula: String
        let nobs: Int
        let npar: Int
        let aic, bic, logLik, deviance: Double
        let fixedNames: [String]
        let thetaCount: Int
    }

    /// Fits each formula to `data` by ML (whatever `options.reml` says) and compares them.
    /// `residualVariances`, when given, holds each model's level-1 variance (nil: constant), so
    /// that a variance function is tested against the constant one (nlme's `anova`).
    public static func compare(_ formulas: [String], data: TableSource, options: FitOptions = FitOptions(),
                               residualVariances: [ResidualVarianceModel?]? = nil) throws -> ModelComparison {
        guard formulas.count >= 2 else { throw InputError("compare needs at least two --formula options") }
        let variances = residualVariances ?? Array(repeating: nil, count: formulas.count)
        guard variances.count == formulas.count else {
            throw InputError("give one --residual-variance per --formula (none for a constant one): \(variances.count) for \(formulas.count) models")
        }
        var ml = options
        ml.reml = false
        let fits = try zip(formulas, variances).map { formula, variance in
            var o = ml
            o.residualVariance = variance
            return try LinearMixedModel.fit(formula, data: data, options: o)
        }
        let fitted = fits.map { f in
            Fitted(formula: f.formula + (f.residualVariance.map { ", \($0.model.nlmeName)(\($0.model.formulaText))" } ?? ""),
                   nobs: f.nobs, npar: f.df, aic: f.aic, bic: f.bic, logLik: f.logLik, deviance: f.objective,
                   fixedNames: f.fixedNames, thetaCount: f.theta.count)
        }
        return try ModelComparison(fitted, dataName: data.name, fits: fits)
    }

    /// Fits each formula as a GLMM (`options`' family, link and quadrature) and compares them,
    /// as lme4's `anova()` of glmer fits.
    public static func compare(_ formulas: [String], data: TableSource, options: GeneralizedFitOptions) throws -> ModelComparison {
        guard formulas.count >= 2 else { throw InputError("compare needs at least two --formula options") }
        let fitted = try formulas.map { formula -> Fitted in
            let f = try GeneralizedLinearMixedModel.fit(formula, data: data, options: options)
            return Fitted(formula: f.formula, nobs: f.nobs, npar: f.df, aic: f.aic, bic: f.bic, logLik: f.logLik,
                          deviance: f.deviance, fixedNames: f.fixedNames, thetaCount: f.theta.count)
        }
        return try ModelComparison(fitted, dataName: data.name, fits: [])
    }

}

extension ModelComparison {
    /// The table of `fitted` models (see the type's discussion).
    init(_ fitted: [Fitted], dataName: String, fits: [FitResult]) throws {
        for f in fitted.dropFirst() where f.nobs != fitted[0].nobs {
            throw InputError("the models were not all fitted to the same rows: \(fitted[0].formula) uses \(fitted[0].nobs), \(f.formula) uses \(f.nobs) (missing values in different columns)")
        }
        let order = fitted.indices.sorted { fitted[$0].npar != fitted[$1].npar ? fitted[$0].npar < fitted[$1].npar : $0 < $1 }
        var rows: [Row] = []
        for (position, k) in order.enumerated() {
            let f = fitted[k]
            var chisq: Double?, df: Int?, p: Double?, boundary: Double?
            if position > 0 {
                let previous = fitted[order[position - 1]]
                let x = 2 * max(0, f.logLik - previous.logLik)
                let d = f.npar - previous.npar
                chisq = x
                df = d
                p = d == 0 ? nil : ChiSquareDistribution.upperTail(x, df: Double(d))
                if d > 0, Set(f.fixedNames) == Set(previous.fixedNames), f.thetaCount > previous.thetaCount {
                    boundary = 0.5 * ChiSquareDistribution.upperTail(x, df: Double(d - 1))
                        + 0.5 * ChiSquareDistribution.upperTail(x, df: Double(d))
                }
            }
            rows.append(Row(name: "m\(k + 1)", formula: f.formula, npar: f.npar, aic: f.aic, bic: f.bic, logLik: f.logLik,
                            deviance: f.deviance, chisq: chisq, df: df, p: p, boundaryP: boundary))
        }
        self.init(dataName: dataName, nobs: fitted[0].nobs, formulas: fitted.map(\.formula), rows: rows, fits: fits)
    }

    /// lme4's printed anova table.
    public func summary() -> String {
        var out = "Data: \(dataName)\n"
        out += "Models (fitted by maximum likelihood, as lme4's anova() refits them):\n"
        for (k, f) in formulas.enumerated() { out += "m\(k + 1): \(f)\n" }
        let cells = rows.map { r -> [String] in
            [r.name, String(r.npar), String(format: "%.1f", r.aic), String(format: "%.1f", r.bic),
             String(format: "%.1f", r.logLik), String(format: "%.1f", r.deviance),
             r.chisq.map { String(format: "%.4g", $0) } ?? "", r.df.map(String.init) ?? "",
             r.p.map(Self.pValue) ?? "", r.p.map(Self.stars) ?? ""]
        }
        out += table(header: ["", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)", ""],
                     rows: cells, leftColumns: 1, indent: "")
        out += "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n"
        for (i, r) in rows.enumerated() {
            guard let b = r.boundaryP, let d = r.df else { continue }
            out += "\(r.name) vs \(rows[i - 1].name) adds variance parameters, tested at their boundary (a variance of 0): "
                + "the 50:50 mixture of χ²(\(d - 1)) and χ²(\(d)) gives p = \(Self.pValue(b)).\n"
        }
        return out
    }

    /// `{"models": [{"formula", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p", "p_boundary"}, …]}`.
    public func json() -> JSONValue {
        let optional = { (x: Double?) in x.map(JSONValue.finite) ?? .null }
        return .object([
            ("data", .string(dataName)), ("nobs", .number(Double(nobs))),
            ("models", .array(rows.map { r in
                .object([("name", .string(r.name)), ("formula", .string(r.formula)), ("npar", .number(Double(r.npar))),
                         ("AIC", .finite(r.aic)), ("BIC", .finite(r.bic)), ("logLik", .finite(r.logLik)),
                         ("deviance", .finite(r.deviance)), ("Chisq", optional(r.chisq)),
                         ("Df", r.df.map { .number(Double($0)) } ?? .null), ("p", optional(r.p)),
                         ("p_boundary", optional(r.boundaryP))])
            })),
        ])
    }

    /// R's `format.pval` with its default of `< 2.2e-16` for the smallest.
    static func pValue(_ p: Double) -> String {
        p < 2.2e-16 ? "< 2.2e-16" : String(format: "%.4g", p)
    }

    static func stars(_ p: Double) -> String {
        p < 0.001 ? "***" : p < 0.01 ? "**" : p < 0.05 ? "*" : p < 0.1 ? "." : " "
    }
}
