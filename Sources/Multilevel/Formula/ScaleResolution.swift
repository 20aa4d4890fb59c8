import Foundation

/// R's `scale(x)` in a formula: x centred at its mean and divided by its standard deviation,
/// both taken over every row of the data where x is not missing (R's model frame evaluates
/// `scale()` on the whole data before dropping incomplete rows). The mean and SD are found
/// once, reading the argument's columns in row order, and written into the formula as
/// `(x − mean) / sd`; the variable keeps its name (`scale(HEIGHT)`).
extension Expression {
    /// Whether a `scale()` call remains.
    var usesScale: Bool {
        switch self {
        case .column, .number: return false
        case .negate(let e): return e.usesScale
        case .binary(_, let a, let b): return a.usesScale || b.usesScale
        case .call(let f, let arguments): return f == "scale" || arguments.contains { $0.usesScale }
        }
    }

    /// The arguments of the innermost `scale()` calls (those whose argument holds no other).
    fileprivate var innermostScaleArguments: [Expression] {
        switch self {
        case .column, .number: return []
        case .negate(let e): return e.innermostScaleArguments
        case .binary(_, let a, let b): return a.innermostScaleArguments + b.innermostScaleArguments
        case .call(let f, let arguments):
            let inner = arguments.flatMap(\.innermostScaleArguments)
            if f == "scale", inner.isEmpty { return arguments }
            return inner
        }
    }

    /// `scale(e)` replaced by `(e − mean) / sd` wherever `statistics` knows e.
    fileprivate func replacingScale(_ statistics: [Expression: (mean: Double, sd: Double)]) -> Expression {
        switch self {
        case .column, .number: return self
        case .negate(let e): return .negate(e.replacingScale(statistics))
        case .binary(let op, let a, let b): return .binary(op, a.replacingScale(statistics), b.replacingScale(statistics))
        case .call(let f, let arguments):
            if f == "scale", arguments.count == 1, let s = statistics[arguments[0]] {
                return .binary("/", .binary("-", arguments[0], .number(s.mean)), .number(s.sd))
            }
            return .call(f, arguments.map { $0.replacingScale(statistics) })
        }
    }
}

extension Variable {
    fileprivate var expression: Expression? {
        if case .transform(_, let e) = self { return e }
        return nil
    }

    fileprivate func replacingScale(_ statistics: [Expression: (mean: Double, sd: Double)]) -> Variable {
        if case .transform(let name, let e) = self { return .transform(name, e.replacingScale(statistics)) }
        return self
    }
}

extension Formula {
    /// Every variable of the formula: response, failures, offsets, fixed and random effects.
    private var allVariables: [Variable] {
        [response] + (failures.map { [$0] } ?? []) + offsets + fixed.terms.flatMap(\.variables)
            + random.flatMap { $0.effects.terms.flatMap(\.variables) }
    }

    /// Whether some variable calls `scale()`.
    var usesScale: Bool { allVariables.contains { $0.expression?.usesScale ?? false } }

    /// The formula with every `scale(e)` replaced by `(e − mean) / sd` from the data (see above).
    /// Throws naming the call when e has no value, or no spread, in the data.
    func resolvingScale(in source: TableSource, chunkRows: Int) throws -> Formula {
        var formula = self
        while formula.usesScale {
            var statistics: [Expression: (mean: Double, sd: Double)] = [:]
            for v in formula.allVariables {
                for argument in v.expression?.innermostScaleArguments ?? [] where statistics[argument] == nil {
                    statistics[argument] = try Self.meanAndSD(of: argument, in: source, chunkRows: chunkRows)
                }
            }
            formula = formula.mapVariables { $0.replacingScale(statistics) }
        }
        return formula
    }

    private func mapVariables(_ f: (Variable) -> Variable) -> Formula {
        func list(_ t: TermList) -> TermList { TermList(intercept: t.intercept, terms: t.terms.map { Term($0.variables.map(f)) }) }
        var copy = Formula(text: text, response: f(response), fixed: list(fixed),
                           random: random.map { RandomTerm(effects: list($0.effects), grouping: $0.grouping) },
                           columns: columns, failures: failures.map(f), offsets: offsets.map(f))
        if let w = weights { copy = copy.weighted(by: w) }
        copy.twoLevelResponse = twoLevelResponse
        return copy
    }

    /// The mean and SD (denominator n − 1) of e over the rows where it is not missing, summed in row order.
    private static func meanAndSD(of e: Expression, in source: TableSource, chunkRows: Int) throws -> (mean: Double, sd: Double) {
        let name = "scale(\(e.columns.joined(separator: ", ")))"
        for c in e.columns where try source.columnType(c) != .numeric {
            throw InputError("\(name): column '\(c)' holds strings, not numbers")
        }
        func forEachValue(_ body: (Double) throws -> Void) throws {
            var start = 0
            while start < source.rowCount {
                let rows = start..<min(start + chunkRows, source.rowCount)
                var values: [String: [Double]] = [:]
                for c in e.columns { values[c] = try source.readNumeric(c, rows: rows) }
                for (i, x) in e.evaluate(values, count: rows.count).enumerated() where !x.isNaN {
                    if x.isInfinite {
                        throw InputError("\(source.name) \(source.rowDescription(rows.lowerBound + i)): \(name) meets the value \(rNumber(x))")
                    }
                    try body(x)
                }
                start = rows.upperBound
            }
        }
        var n = 0.0, sum = 0.0
        try forEachValue { n += 1; sum += $0 }
        guard n > 1 else { throw InputError("\(name): fewer than two values in \(source.name)") }
        let mean = sum / n
        var squares = 0.0
        try forEachValue { squares += ($0 - mean) * ($0 - mean) }
        let sd = (squares / (n - 1)).squareRoot()
        guard sd > 0 else { throw InputError("\(name): the values are all \(rNumber(mean)), so there is nothing to scale by") }
        return (mean, sd)
    }
}
