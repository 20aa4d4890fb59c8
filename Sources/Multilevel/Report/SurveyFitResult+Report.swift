import Foundation

/// The printed summary of a sampling-weighted fit, laid out like lme4's, with the linearised
/// standard errors in place of the model-based ones, and its JSON.
extension SurveyFitResult {
    /// How the standard errors were made, in words.
    private var varianceDescription: String {
        let r = design.replicateWeights
        guard !r.isEmpty else { return "linearised (sandwich), \(varianceDesign), with replacement" }
        let method = design.replicateMethod == .fay ? "Fay's BRR (k = \(rNumber(design.fayK)))" : design.replicateMethod.title
        return "replicate weights, \(method), \(r.count) replicates (\(r.first!) … \(r.last!)), deviations from the full-sample estimates"
    }

    /// How the variance was linearised, in words.
    private var varianceDesign: String {
        let units = design.psu.map { "\(psus) PSUs (\($0))" } ?? "\(psus) clusters (\(groups.last!.name)) as PSUs"
        let strata = design.strata.map { ", \(self.strata) strata (\($0))" } ?? ", one stratum"
        return units + strata
    }

    public func summary() -> String {
        var out = "Linear mixed model fit by maximum pseudo-likelihood (sampling weights)\n"
        out += "Formula: \(formula)\n"
        if !dataName.isEmpty { out += "   Data: \(dataName)\n" }
        let levels = design.weights.enumerated().map { "level \($0.offset + 1) \($0.element)" }.joined(separator: ", ")
        out += terms.isEmpty ? "Weights: \(design.weights[0])\n" : "Weights: \(levels); level-1 weights scaled by \(design.scaling.rawValue)\n"
        out += "Standard errors: \(varianceDescription)\n\n"
        out += table(header: ["log pseudo-likelihood", "sum of scaled weights"],
                     rows: [[String(format: "%.4f", logPseudoLikelihood), String(format: "%.6g", weightedCount)]],
                     leftColumns: 0, indent: " ") + "\n"

        if !terms.isEmpty {
            out += "Random effects:\n"
            let shown = varcorr.indices
            let values = columnFormat(shown.map { varcorr[$0].vcov }, digits: 4)
            let ses = shown.map { varcorrStandardErrors[$0].isFinite ? String(format: "%.4g", varcorrStandardErrors[$0]) : "(bound)" }
            var rows: [[String]] = []
            var lastGroup = ""
            for i in shown {
                let e = varcorr[i]
                let group = e.group == lastGroup ? "" : e.group
                lastGroup = e.group
                let name = e.var2.map { "cov(\(e.var1!), \($0))" } ?? (e.var1 ?? "")
                let sdcor = e.var2 == nil ? String(format: "%.4f", e.sdcor) : String(format: "%.2f (corr)", e.sdcor)
                rows.append([group, name, values[i], ses[i], sdcor])
            }
            out += table(header: ["Groups", "Name", "Variance", "Robust SE", "Std.Dev."], rows: rows, leftColumns: 2, indent: " ")
            out += "Number of obs: \(nobs), groups:  " + groups.map { "\($0.name), \($0.count)" }.joined(separator: "; ") + "\n"
        } else {
            let e = varcorr[varcorr.count - 1]
            out += "Residual variance \(String(format: "%.6g", e.vcov)) (robust SE \(String(format: "%.4g", varcorrStandardErrors.last!))), "
                + "residual SD \(String(format: "%.4f", e.sdcor))\nNumber of obs: \(nobs)\n"
        }
        if droppedRows > 0 { out += "Rows dropped for missing values: \(droppedRows)\n" }

        out += "\nFixed effects:\n"
        let est = columnFormat(beta, digits: 4), se = columnFormat(standardErrors, digits: 4)
        let z = zValues.map { String(format: "%.3f", $0) }
        let pv = pValueColumns(pValues).text
        let limits = columnFormat(waldIntervals.map(\.lower) + waldIntervals.map(\.upper), digits: 4)
        let lower = Array(limits[..<beta.count]), upper = Array(limits[beta.count...])
        // R's confint names: "2.5 %" and "97.5 %" at 95%.
        let tails = [(1 - level) / 2, (1 + level) / 2].map { String(format: "%g %%", 100 * $0) }
        out += table(header: ["", "Estimate", "Robust SE", "z value", "Pr(>|z|)"] + tails,
                     rows: fixedNames.indices.map { [fixedNames[$0], est[$0], se[$0], z[$0], pv[$0], lower[$0], upper[$0]] },
                     leftColumns: 1, indent: "")
        out += "\n" + notes.map { "Note: \($0)\n" }.joined()
        return out
    }

    public func json() -> JSONValue {
        let named: ([Double]) -> JSONValue = { values in .object(zip(self.fixedNames, values).map { ($0, JSONValue.finite($1)) }) }
        let p = fixedNames.count
        return .object([
            ("formula", .string(formula)),
            ("data", .string(dataName)),
            ("criterion", .string("ML (pseudo-likelihood)")),
            ("survey", .object([
                ("weights", .array(design.weights.map(JSONValue.string))),
                ("scaling", .string(design.scaling.rawValue)),
                ("psu", design.psu.map(JSONValue.string) ?? .null),
                ("strata", design.strata.map(JSONValue.string) ?? .null),
                ("clusters", .object(groups.map { ($0.name, .number(Double($0.count))) })),
                ("psus", .number(Double(psus))),
                ("nstrata", .number(Double(strata))),
                ("sum_scaled_weights", .finite(weightedCount)),
                ("variance", .string(design.replicateWeights.isEmpty ? "linearized" : design.replicateMethod.rawValue)),
                ("replicate_weights", .array(design.replicateWeights.map(JSONValue.string))),
                ("fay_k", design.replicateMethod == .fay && !design.replicateWeights.isEmpty ? .finite(design.fayK) : .null),
                ("single_psu", .string(design.singlePSU.rawValue)),
            ])),
            ("nobs", .number(Double(nobs))),
            ("rows_dropped", .number(Double(droppedRows))),
            ("theta", .array(theta.map(JSONValue.finite))),
            ("theta_names", .array(thetaNames.map(JSONValue.string))),
            ("beta", named(beta)),
            ("se", named(standardErrors)),
            ("z", named(zValues)),
            ("p", named(pValues)),
            ("level", .finite(level)),
            ("ci", .object(zip(fixedNames, waldIntervals).map { ($0, .array([.finite($1.lower), .finite($1.upper)])) })),
            ("vcov", .array((0..<p).map { i in .array((0..<p).map { j in .finite(fixedCovariance[i + j * p]) }) })),
            ("sigma", .finite(sigma)),
            ("logPseudoLik", .finite(logPseudoLikelihood)),
            ("varcorr", .array(varcorr.indices.map { i in
                let e = varcorr[i]
                return .object([("grp", .string(e.group)), ("var1", e.var1.map(JSONValue.string) ?? .null),
                                ("var2", e.var2.map(JSONValue.string) ?? .null), ("vcov", .finite(e.vcov)),
                                ("sdcor", .finite(e.sdcor)), ("se", .finite(varcorrStandardErrors[i]))])
            })),
            ("optimizer", .object([("algorithm", .string(optimizer.algorithm)), ("evaluations", .number(Double(optimizer.evaluations))),
                                   ("converged", .bool(optimizer.converged))])),
            ("notes", .array(notes.map(JSONValue.string))),
        ])
    }
}
