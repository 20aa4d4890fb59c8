import Foundation

/// The printed summary of a GLMM, laid out like lme4's `summary(glmer(...))`, and its JSON.
///
/// As for the Gaussian fits, lme4's "Scaled residuals" are not shown.
extension GeneralizedFitResult {
    public func summary() -> String {
        var out = "Generalized linear mixed model fit by maximum likelihood ("
            + (nodes == 1 ? "Laplace Approximation" : "Adaptive Gauss-Hermite Quadrature, nAGQ = \(nodes)") + ") ['glmerMod']\n"
        out += " Family: \(distribution.family.rawValue)  ( \(distribution.link.rawValue) )\n"
        out += "Formula: \(formula)\n"
        if !dataName.isEmpty { out += "   Data: \(dataName)\n" }
        out += "\n"
        out += fitStatistics(aic: aic, bic: bic, logLik: logLik, deviance: deviance, residualDF: residualDF)

        out += "Random effects:\n" + randomEffectsTable(terms: terms, varcorr: varcorr)
        out += observations(nobs, groups: groupCounts, droppedRows: droppedRows)

        out += "\nFixed effects:\n"
        let est = columnFormat(beta, digits: 4), se = columnFormat(standardErrors, digits: 4)
        let z = zValues.map { String(format: "%.3f", $0) }
        let (pv, stars) = pValueColumns(pValues)
        out += table(header: ["", "Estimate", "Std. Error", "z value", "Pr(>|z|)", ""],
                     rows: fixedNames.indices.map { [fixedNames[$0], est[$0], se[$0], z[$0], pv[$0], stars[$0]] },
                     leftColumns: 1, indent: "")
        out += significanceLegend
        out += "Standard errors: " + (covarianceSource == "Hessian"
            ? "from the finite-difference Hessian of the deviance in (θ, β), as glmer for fewer than 10^4 rows"
            : "from R_X, the weighted least squares at the mode, as glmer for 10^4 rows or more") + "\n"
        out += fixedEffectCorrelations(names: fixedNames, covariance: covariance, standardErrors: standardErrors)
        if !notes.isEmpty { out += "\n" + notes.map { "Note: \($0)\n" }.joined() }
        return out
    }

    public func json() -> JSONValue {
        let numbers: ([Double]) -> JSONValue = { .array($0.map(JSONValue.finite)) }
        let named: ([Double]) -> JSONValue = { values in .object(zip(self.fixedNames, values).map { ($0, JSONValue.finite($1)) }) }
        let p = fixedNames.count
        let optimizer: (OptimizerSummary) -> JSONValue = { s in
            .object([("algorithm", .string(s.algorithm)), ("evaluations", .number(Double(s.evaluations))),
                     ("return_code", .number(Double(s.returnCode)))])
        }
        return .object([
            ("formula", .string(formula)),
            ("data", .string(dataName)),
            ("family", .string(distribution.family.rawValue)),
            ("link", .string(distribution.link.rawValue)),
            ("nAGQ", .number(Double(nodes))),
            ("nobs", .number(Double(nobs))),
            ("rows_dropped", .number(Double(droppedRows))),
            ("ngroups", .object(groupCounts.map { ($0.group, .number(Double($0.count))) })),
            ("theta", numbers(theta)),
            ("theta_names", .array(thetaNames.map(JSONValue.string))),
            ("beta", named(beta)),
            ("se", named(standardErrors)),
            ("se_source", .string(covarianceSource)),
            ("se_rx", named((0..<p).map { rxCovariance[$0 + $0 * p].squareRoot() })),
            ("z", named(zValues)),
            ("p", named(pValues)),
            ("vcov", .array((0..<p).map { i in .array((0..<p).map { j in .finite(covariance[i + j * p]) }) })),
            ("logLik", .finite(logLik)),
            ("deviance", .finite(deviance)),
            ("deviance_residuals", .finite(devianceResiduals)),
            // The Laplace deviance's parts at the mode: −2 × the first, plus the other two (lme4's aic, sqrL, ldL2).
            ("laplace", .object([("conditional_logLik", .finite(conditionalLogLikelihood)), ("u_squared", .finite(squaredModeLength)),
                                 ("logdet_L2", .finite(logDetL2))])),
            ("AIC", .finite(aic)),
            ("BIC", .finite(bic)),
            ("df", .number(Double(df))),
            ("df_resid", .number(Double(residualDF))),
            ("varcorr", varcorrJSON(varcorr)),
            ("optimizer", .object([("stage1", optimizer(stages.first)), ("stage2", optimizer(stages.second)),
                                   ("pirls_iterations", .number(Double(pirlsIterations)))])),
            ("messages", .array(notes.map(JSONValue.string))),
            ("factor_levels", .object(factorLevels.map { ($0.variable, .array($0.levels.map(JSONValue.string))) })),
            ("ranef", .array(terms.enumerated().map { k, t in
                .object([("group", .string(t.group)), ("effects", .array(t.effects.map(JSONValue.string))),
                         ("levels", .array(t.levels.map(JSONValue.string))),
                         ("modes", .array(t.levels.indices.map { l in
                             numbers(Array(conditionalModes[k][(l * t.dimension)..<((l + 1) * t.dimension)])) })),
                         ("condsd", .array(t.levels.indices.map { l in
                             numbers(Array(conditionalSDs[k][(l * t.dimension)..<((l + 1) * t.dimension)])) }))])
            })),
        ])
    }

    /// The conditional modes and conditional SDs as CSV, as `FitResult.conditionalModesCSV`
    /// (lme4's `as.data.frame(ranef(m, condVar = TRUE))`: grpvar, term, grp, condval, condsd).
    public func conditionalModesCSV() -> String {
        Multilevel.conditionalModesCSV(terms: terms, modes: conditionalModes) { k, l, j in
            conditionalSDs[k][l * terms[k].dimension + j]
        }
    }
}
