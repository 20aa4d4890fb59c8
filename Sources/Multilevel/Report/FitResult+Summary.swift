import Foundation

/// The printed summary, laid out like lme4's `summary()` of an `lmerMod`.
///
/// One difference: lme4's "Scaled residuals" need the rows, which a fit from cross-products
/// never revisits, so they are not shown.
extension FitResult {
    public func summary() -> String {
        var out = ""
        out += reml ? "Linear mixed model fit by REML ['lmerMod']\n"
                    : "Linear mixed model fit by maximum likelihood  ['lmerMod']\n"
        out += "Formula: \(formula)\n"
        if !dataName.isEmpty { out += "   Data: \(dataName)\n" }
        if let weights { out += "Weights: \(weights)\n" }
        out += "\n"
        if reml {
            out += "REML criterion at convergence: \(String(format: "%.1f", objective))\n\n"
        } else {
            out += fitStatistics(aic: aic, bic: bic, logLik: logLik, deviance: objective, residualDF: residualDF)
        }

        out += "Random effects:\n" + randomEffectsTable(terms: terms, varcorr: varcorr)
        out += observations(nobs, groups: groupCounts, droppedRows: droppedRows)
        if let variance = residualVariance { out += residualVarianceSummary(variance) }
        if let icc = intraclassCorrelations {
            out += "Intra-class correlation (VPC): " + icc.map { "\($0.group) \(String(format: "%.4f", $0.icc))" }.joined(separator: ", ") + "\n"
        }

        out += "\nFixed effects:\n"
        let est = columnFormat(beta, digits: 4)
        if let tests = fixedEffectTests {
            // lmerTest's layout: df and Pr(>|t|), and (Kenward–Roger) the adjusted standard errors.
            let se = columnFormat(tests.standardErrors, digits: 4)
            let tv = tests.t.map { String(format: "%.3f", $0) }
            let dfs = tests.df.map { String(format: "%.3f", $0) }
            let (pv, stars) = pValueColumns(tests.p)
            out += table(header: ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)", ""],
                         rows: fixedNames.indices.map { [fixedNames[$0], est[$0], se[$0], dfs[$0], tv[$0], pv[$0], stars[$0]] },
                         leftColumns: 1, indent: "")
            out += significanceLegend
            out += "Degrees of freedom: \(tests.method.title)'s, as lmerTest\(tests.method == .kenwardRoger ? " (pbkrtest; standard errors adjusted)" : "")\n"
        } else {
            let se = columnFormat(standardErrors, digits: 4)
            let tv = zip(beta, standardErrors).map { String(format: "%.3f", $0 / $1) }
            out += table(header: ["", "Estimate", "Std. Error", "t value"],
                         rows: fixedNames.indices.map { [fixedNames[$0], est[$0], se[$0], tv[$0]] }, leftColumns: 1, indent: "")
        }

        out += fixedEffectCorrelations(names: fixedNames, covariance: fixedCovariance, standardErrors: standardErrors)
        if let tests = fixedEffectTests, !tests.terms.isEmpty || !tests.untestedTerms.isEmpty {
            out += "\n" + analysisOfVariance(tests)
        }
        if let mc = monteCarlo {
            out += "\n" + monteCarloSummary(mc)
        }
        if !optimizer.converged || !notes.isEmpty {
            out += "\n" + notes.map { "Note: \($0)\n" }.joined()
        }
        return out
    }

    /// nlme's "Variance function" block, each group's residual SD, and the likelihood-ratio test
    /// against a constant residual variance.
    private func residualVarianceSummary(_ v: ResidualVarianceFit) -> String {
        let structure: String
        switch v.model {
        case .groups: structure = "Different standard deviations per stratum"
        case .exponential: structure = "Exponential of variance covariate"
        case .power: structure = "Power of variance covariate"
        }
        var out = "\nVariance function (\(v.model.nlmeName)):\n Structure: \(structure)\n Formula: \(v.model.formulaText)\n Parameter estimates:\n"
        out += table(header: v.names, rows: [v.values.map { String(format: "%.6f", $0) }], leftColumns: 0, indent: "")
        switch v.model {
        case .groups(let g):
            out += " Residual Std.Dev. by \(g): " + zip(v.names, v.values).map { "\($0) \(String(format: "%.4f", sigma * $1))" }
                .joined(separator: ", ") + " (σ above is \(v.names[0])'s)\n"
        case .exponential(let x):
            out += " Residual Std.Dev.: σ·exp(expon·\(x)) (σ above is at \(x) = 0)\n"
        case .power(let x):
            out += " Residual Std.Dev.: σ·|\(x)|^power (σ above is at |\(x)| = 1)\n"
        }
        if let test = v.constantTest {
            out += String(format: " Likelihood-ratio test of a constant residual variance: Chisq = %.4f, Df = %d, Pr(>Chisq) = %.4g\n",
                          test.chiSquare, test.df, test.p)
        }
        return out
    }

    /// lmerTest's `anova(type = 3)` table: each fixed-effect term's F-test.
    private func analysisOfVariance(_ tests: FixedEffectTests) -> String {
        var out = "Type III Analysis of Variance Table with \(tests.method.title)'s method\n"
        let terms = tests.terms
        let ms = terms.map(\.meanSquare)
        let msText = columnFormat(ms, digits: 5), ssText = columnFormat(zip(ms, terms).map { $0 * Double($1.numeratorDF) }, digits: 5)
        let (pv, stars) = pValueColumns(terms.map(\.p))
        out += table(header: ["", "Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)", ""],
                     rows: terms.indices.map { i in
                         [terms[i].term, ssText[i], msText[i], String(terms[i].numeratorDF),
                          String(format: "%.2f", terms[i].denominatorDF), String(format: "%.4f", terms[i].f), pv[i], stars[i]]
                     }, leftColumns: 1, indent: "")
        if !terms.isEmpty { out += significanceLegend }
        if !tests.untestedTerms.isEmpty {
            out += "Not tested (coding is not treatment contrasts, or an aliased column): \(tests.untestedTerms.joined(separator: ", "))\n"
        }
        return out
    }

    /// The iterative solver's Monte-Carlo errors: what the estimates would move by with other probes.
    private func monteCarloSummary(_ mc: MonteCarloError) -> String {
        var out = "Iterative solver (conjugate gradients; log-determinant and traces on random probes):\n"
        out += String(format: " Monte-Carlo SE of the %@: %.4f (%d probes); of θ (%d probes): ",
                      reml ? "REML criterion" : "deviance", mc.criterionSE, mc.criterionProbes, mc.probes)
        out += zip(thetaNames, mc.thetaSE).map { String(format: "%@ %.2g", $0.0, $0.1) }.joined(separator: ", ") + "\n"
        if let last = mc.iterationLog.last {
            out += String(format: " CG iterations at the end: %d (solves), %.1f mean and %d most (probes)\n",
                          last.solve, last.probeMean, last.probeMax)
        }
        return out
    }
}

/// Formats a column as R's `format(x, digits = d)` does: one number of decimals for the whole
/// column, enough that every value shows `digits` significant digits (at most 8 decimals).
/// p-values as R prints them in a coefficient table ("< 2e-16" below it, else 3 significant
/// digits), with their significance stars, and the legend of the stars.
func pValueColumns(_ pValues: [Double]) -> (text: [String], stars: [String]) {
    (pValues.map { $0 < 2e-16 ? "< 2e-16" : String(format: "%.3g", $0) },
     pValues.map { $0 < 0.001 ? "***" : $0 < 0.01 ? "**" : $0 < 0.05 ? "*" : $0 < 0.1 ? "." : "" })
}
let significanceLegend = "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n"

func columnFormat(_ values: [Double], digits: Int) -> [String] {
    var decimals = 0
    for v in values where v.isFinite && v != 0 {
        let magnitude = Int(floor(log10(abs(v))))
        decimals = max(decimals, min(8, digits - 1 - magnitude))
    }
    return values.map { $0.isFinite ? String(format: "%.\(decimals)f", $0) : "NaN" }
}

/// A plain-text table: the first `leftColumns` columns left-aligned, the rest right-aligned.
func table(header: [String], rows: [[String]], leftColumns: Int, indent: String) -> String {
    let columns = header.count
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < columns { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        var parts: [String] = []
        for i in 0..<columns {
            let cell = i < cells.count ? cells[i] : ""
            let pad = String(repeating: " ", count: widths[i] - cell.count)
            parts.append(i < leftColumns ? cell + pad : pad + cell)
        }
        return indent + parts.joined(separator: " ").replacingOccurrences(of: #"\s+$"#, with: "", options: .regularExpression) + "\n"
    }
    return line(header) + rows.map(line).joined()
}

/// lme4's "Random effects:" table: each term's variances, SDs and correlations (groups named as
/// lme4 names them), then the residual's when `varcorr` ends with it (a Gaussian fit).
func randomEffectsTable(terms: [RandomEffectsTerm], varcorr: [VarCorrEntry]) -> String {
    var rows: [[String]] = []
    let maxDim = terms.map(\.dimension).max() ?? 1
    let diagonal = varcorr.filter { $0.var2 == nil }
    let variances = columnFormat(diagonal.map(\.vcov), digits: 4), sds = columnFormat(diagonal.map(\.sdcor), digits: 4)
    var vi = 0
    for (t, group) in zip(terms, FitResult.uniqueGroupNames(terms)) {
        for i in 0..<t.dimension {
            var row = [i == 0 ? group : "", t.effects[i], variances[vi], sds[vi]]
            for j in 0..<i {
                let c = varcorr.first { $0.group == group && $0.var1 == t.effects[j] && $0.var2 == t.effects[i] }!
                row.append(String(format: "%.2f", c.sdcor))
            }
            rows.append(row)
            vi += 1
        }
    }
    if varcorr.last?.group == "Residual" { rows.append(["Residual", "", variances[vi], sds[vi]]) }
    let corrHeader = maxDim > 1 ? ["Corr"] + Array(repeating: "", count: maxDim - 2) : []
    return table(header: ["Groups", "Name", "Variance", "Std.Dev."] + corrHeader, rows: rows, leftColumns: 2, indent: " ")
}

/// lme4's "Correlation of Fixed Effects" (names abbreviated as R's `abbreviate(…, 6)` in its
/// simplest form: the first 6 characters, "(Intr)"), after a blank line; for more than 12
/// coefficients the note that it is not shown; nothing for one.
func fixedEffectCorrelations(names: [String], covariance: [Double], standardErrors se: [Double]) -> String {
    let p = names.count
    if p > 12 { return "\nCorrelation matrix not shown by default, as p = \(p) > 12.\n" }
    guard p > 1 else { return "" }
    let short = names.dropLast().map { $0 == "(Intercept)" ? "(Intr)" : String($0.prefix(6)) }
    let rows = (1..<p).map { i -> [String] in
        let correlations = (0..<i).map { j -> String in String(format: "%.3f", covariance[i + j * p] / (se[i] * se[j])) }
        return [names[i]] + correlations
    }
    return "\nCorrelation of Fixed Effects:\n" + table(header: [""] + short, rows: rows, leftColumns: 1, indent: "")
}

/// lme4's line of fit statistics of an ML fit (AIC, BIC, logLik, deviance, df.resid), then a blank line.
func fitStatistics(aic: Double, bic: Double, logLik: Double, deviance: Double, residualDF: Int) -> String {
    table(header: ["AIC", "BIC", "logLik", "deviance", "df.resid"],
          rows: [[String(format: "%.1f", aic), String(format: "%.1f", bic), String(format: "%.1f", logLik),
                  String(format: "%.1f", deviance), String(residualDF)]],
          leftColumns: 0, indent: " ") + "\n"
}

/// lme4's "Number of obs: n, groups:  g, k; …" line, and the rows dropped for missing values, if any.
func observations(_ nobs: Int, groups: [(group: String, count: Int)], droppedRows: Int) -> String {
    "Number of obs: \(nobs), groups:  " + groups.map { "\($0.group), \($0.count)" }.joined(separator: "; ") + "\n"
        + (droppedRows > 0 ? "Rows dropped for missing values: \(droppedRows)\n" : "")
}
