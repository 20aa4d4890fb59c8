import Foundation

/// Bootstrap and profile results as printed, as JSON, and the replicate table as a file.
extension BootstrapResult {
    public func summary() -> String {
        var out = "Parametric bootstrap: \(replicates.count) replicates (seed \(seed))"
        out += failed > 0 ? ", \(failed) failed refits left out\n" : "\n"
        let kind = ["perc": "Percentile", "basic": "Basic", "norm": "Normal"][type.rawValue]!
        return out + intervalTable(intervals, level: level, title: "\(kind) bootstrap intervals")
    }

    public func json() -> JSONValue {
        .object([("replicates", .number(Double(replicates.count))), ("seed", .number(Double(seed))),
                 ("level", .number(level)), ("type", .string(type.rawValue)), ("failed", .number(Double(failed))),
                 ("intervals", intervalsJSON(intervals))])
    }

    /// The columns of the replicate table: index, θ (lme4's names), β, σ, deviance, and any
    /// residual-variance parameters.
    public var tableColumns: [String] { ["index"] + thetaNames + fixedNames + ["sigma", "deviance"] + varianceNames }

    /// Writes the replicates in index order, as CSV (`.csv`, doubles to 17 significant digits,
    /// so they read back bit for bit) or HDF5 (`.h5`, one dataset per column in group `bootstrap`).
    public func writeTable(to path: String) throws {
        let rows = replicates.map { r in [Double(r.index)] + r.theta + r.beta + [r.sigma, r.deviance] + r.varianceParameters }
        if path.hasSuffix(".csv") {
            var out = tableColumns.map { "\"\($0)\"" }.joined(separator: ",") + "\n"
            for row in rows {
                out += row.enumerated().map { $0 == 0 ? String(Int($1)) : ($1.isFinite ? String(format: "%.17g", $1) : "NA") }
                    .joined(separator: ",") + "\n"
            }
            try OutputFile.write(out, to: path)
        } else if path.hasSuffix(".h5") {
            let names = tableColumns
            try OutputFile.write(to: path) { temporary in
                let writer = try HDF5TableWriter(path: temporary, group: "bootstrap",
                                                 columns: [.integer("index")] + names.dropFirst().map { .numeric($0) })
                var numeric: [String: [Double]] = [:]
                for (c, name) in names.enumerated().dropFirst() { numeric[name] = rows.map { $0[c] } }
                try writer.append(numeric: numeric, integer: ["index": replicates.map { Int64($0.index) }])
                try writer.setAttribute("seed", String(seed))
                try writer.close()
            }
        } else {
            throw InputError("--bootstrap-table '\(path)': the file must end in .csv or .h5")
        }
    }
}

extension ProfileResult {
    public func summary() -> String {
        intervalTable(intervals, level: level, title: "Profile-likelihood intervals (ML deviance, as lme4's profile)")
    }

    public func json() -> JSONValue {
        .object([("level", .number(level)), ("intervals", intervalsJSON(intervals))])
    }
}

/// Intervals as a table: parameter, estimate, lower and upper limit (lme4's `confint` columns).
func intervalTable(_ intervals: [ParameterInterval], level: Double, title: String) -> String {
    let alpha = (1 - level) / 2
    let percent = { (p: Double) in String(format: "%g %%", (p * 1000).rounded() / 10) }
    let format = { (x: Double) in x.isFinite ? String(format: "%.6g", x) : "NA" }
    let rows = intervals.map { [$0.parameter.label, format($0.parameter.estimate), format($0.lower), format($0.upper)] }
    return "\(title):\n" + table(header: ["", "Estimate", percent(alpha), percent(1 - alpha)], rows: rows,
                                   leftColumns: 1, indent: "")
}

/// `[{"parameter", "group", "var1", "var2", "name", "estimate", "lower", "upper"}, …]`, absent keys null.
func intervalsJSON(_ intervals: [ParameterInterval]) -> JSONValue {
    let text = { (s: String?) in s.map(JSONValue.string) ?? .null }
    return .array(intervals.map { i in
        .object([("parameter", .string(i.parameter.kind.rawValue)), ("group", text(i.parameter.group)),
                 ("var1", text(i.parameter.var1)), ("var2", text(i.parameter.var2)), ("name", text(i.parameter.name)),
                 ("estimate", .finite(i.parameter.estimate)), ("lower", .finite(i.lower)), ("upper", .finite(i.upper))])
    })
}
