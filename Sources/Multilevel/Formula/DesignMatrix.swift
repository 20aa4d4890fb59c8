/// How a variable enters a design matrix: its values, or indicators of its levels.
public enum VariableCoding: Hashable, Sendable {
    case numeric
    /// A categorical variable; level 0 is the baseline of treatment contrasts.
    case categorical(levels: [String])
}

/// One column of a design matrix: a product of numeric variables and level indicators.
///
/// The intercept has neither (the product of nothing is 1). `x:fB` is
/// `numeric: [x], indicators: [(f, level 1)]`.
public struct DesignColumn: Hashable, Sendable {
    /// R's column name, e.g. "(Intercept)", "sexM", "standLRT:schavg", "service1:dept10".
    public let name: String
    /// Indices into `Design.variables` of numeric variables, multiplied together.
    public let numeric: [Int]
    /// Indicators (1 where the variable has the level, else 0), multiplied together.
    public let indicators: [Indicator]

    /// "Variable `variable` (an index into `Design.variables`) has level `level`".
    public struct Indicator: Hashable, Sendable {
        public let variable: Int
        public let level: Int

        public init(variable: Int, level: Int) {
            self.variable = variable
            self.level = level
        }
    }

    public init(name: String, numeric: [Int], indicators: [Indicator]) {
        self.name = name
        self.numeric = numeric
        self.indicators = indicators
    }
}

/// The columns of a model matrix for a term list, coded by R's `model.matrix` rules
/// with treatment contrasts, and their evaluation on chunks of rows.
///
/// R's rule (`TermCode` in R's model.c): in each term, a categorical variable F is coded
/// by contrasts (levels 2…L; the baseline, level 1, dropped) if the term without F is
/// empty or is contained in an earlier term; otherwise by indicators of all L levels.
/// Without an intercept, the first categorical variable (of two or more levels) of the
/// first term that has one is coded by indicators of all levels. Numeric variables
/// are multiplied in. The columns of an interaction vary its first variable's levels
/// fastest, and their names join the pieces with ":".
///
/// ```swift
/// let terms = try Formula.parse("y ~ f*g").fixed
/// let design = Design(terms) { variable in
///     variable.name == "f" ? .categorical(levels: ["A", "B"]) : .categorical(levels: ["X", "Y"])
/// }
/// design.columns.map(\.name)     // ["(Intercept)", "fB", "gY", "fB:gY"]
/// ```
public struct Design: Sendable {
    /// The distinct variables the columns use, in order of first appearance in the terms.
    public let variables: [Variable]
    /// The coding of each of `variables`, as the `coding` function gave it.
    public let codings: [VariableCoding]
    /// "(Intercept)" first when present, then each term's columns in term order.
    public let columns: [DesignColumn]
    /// The columns of each term of the term list (`columns` indices), in term order.
    public let termColumns: [Range<Int>]

    /// Lay out the columns of `terms`; `coding` is asked once about each distinct variable.
    public init(_ terms: TermList, coding: (Variable) throws -> VariableCoding) rethrows {
        var variables: [Variable] = []
        var codings: [VariableCoding] = []
        for term in terms.terms {
            for variable in term.variables where !variables.contains(variable) {
                variables.append(variable)
                codings.append(try coding(variable))
            }
        }
        func levelCount(_ variable: Variable) -> Int? {
            guard case .categorical(let levels) = codings[variables.firstIndex(of: variable)!] else { return nil }
            return levels.count
        }

        let sets = terms.terms.map { Set($0.variables) }
        var allLevels: [[Bool]] = terms.terms.indices.map { j in
            terms.terms[j].variables.map { variable in
                let rest = sets[j].subtracting([variable])
                return !(rest.isEmpty || sets[..<j].contains { rest.isSubset(of: $0) })
            }
        }
        if !terms.intercept {
            search: for (j, term) in terms.terms.enumerated() {
                for (k, variable) in term.variables.enumerated() where (levelCount(variable) ?? 0) > 1 {
                    allLevels[j][k] = true
                    break search
                }
            }
        }

        var columns: [DesignColumn] = []
        var termColumns: [Range<Int>] = []
        if terms.intercept { columns.append(DesignColumn(name: "(Intercept)", numeric: [], indicators: [])) }
        for (j, term) in terms.terms.enumerated() {
            let first = columns.count
            defer { termColumns.append(first..<columns.count) }
            var pieces: [(names: [String], indicators: [DesignColumn.Indicator])] = [([], [])]
            var numeric: [Int] = []
            for (k, variable) in term.variables.enumerated() {
                let v = variables.firstIndex(of: variable)!
                guard case .categorical(let levels) = codings[v] else {
                    numeric.append(v)
                    pieces = pieces.map { ($0.names + [variable.name], $0.indicators) }
                    continue
                }
                let kept = allLevels[j][k] ? levels.indices : levels.indices.dropFirst()
                pieces = kept.flatMap { level in
                    pieces.map {
                        ($0.names + [variable.name + levels[level]],
                         $0.indicators + [DesignColumn.Indicator(variable: v, level: level)])
                    }
                }
            }
            columns += pieces.map {
                DesignColumn(name: $0.names.joined(separator: ":"), numeric: numeric, indicators: $0.indicators)
            }
        }
        self.variables = variables
        self.codings = codings
        self.columns = columns
        self.termColumns = termColumns
    }

    /// Fill `out` (row-major, count × columns.count) for a chunk of rows.
    ///
    /// `numeric[v]` holds the values of numeric variable v (empty for categorical ones);
    /// `codes[v]` holds 0-based level codes of categorical variable v (empty for numeric ones).
    /// `out` is resized if it has not exactly count × columns.count entries. A missing value
    /// (NaN, or a negative code) gives NaN in every column that uses its variable.
    public func evaluate(numeric: [[Double]], codes: [[Int32]], count: Int, into out: inout [Double]) {
        let width = columns.count
        if out.count != count * width { out = [Double](repeating: 0, count: count * width) }
        for (c, column) in columns.enumerated() {
            for row in 0..<count {
                var value = 1.0
                for v in column.numeric { value *= numeric[v][row] }
                for indicator in column.indicators {
                    let code = codes[indicator.variable][row]
                    value *= code < 0 ? .nan : (Int(code) == indicator.level ? 1 : 0)
                }
                out[row * width + c] = value
            }
        }
    }
}
