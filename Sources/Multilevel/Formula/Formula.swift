import Foundation

// MARK: - Expression

/// A numeric expression: the body of `I(...)`, a function such as `log(x)`, or a bare column.
///
/// The parser builds these for transformed variables; the engine evaluates them on
/// chunks of rows. The operators are R's: `+ - * /`, `^` (power), unary minus, and the
/// one-argument functions `log` (natural), `exp`, `sqrt` and `abs`.
///
/// ```swift
/// let square = Expression.binary("^", .column("x"), .number(2))    // I(x^2)
/// square.evaluate(["x": [1, 2, 3]], count: 3)                       // [1, 4, 9]
/// ```
public indirect enum Expression: Hashable, Sendable {
    case column(String)
    case number(Double)
    case negate(Expression)
    /// An operator applied to two operands: one of `+ - * / ^`.
    case binary(Character, Expression, Expression)
    /// A function of one argument: one of `Expression.functions`.
    case call(String, [Expression])

    /// The functions `call` may name, each taking one argument. `scale` (R's centring and scaling
    /// by the mean and SD) is resolved against the data before any evaluation (`ScaleResolution`).
    public static let functions: Set<String> = ["log", "exp", "sqrt", "abs", "scale"]

    /// Column names referenced, in order of first appearance.
    public var columns: [String] {
        var names: [String] = []
        collectColumns(into: &names)
        return names
    }

    private func collectColumns(into names: inout [String]) {
        switch self {
        case .column(let name):
            if !names.contains(name) { names.append(name) }
        case .number:
            break
        case .negate(let operand):
            operand.collectColumns(into: &names)
        case .binary(_, let left, let right):
            left.collectColumns(into: &names)
            right.collectColumns(into: &names)
        case .call(_, let arguments):
            for argument in arguments { argument.collectColumns(into: &names) }
        }
    }

    /// Evaluate elementwise over a chunk: `values[name]` has `count` entries for every referenced column.
    ///
    /// Missing values (NaN) propagate, as do the NaNs of `log` or `sqrt` of a negative number.
    public func evaluate(_ values: [String: [Double]], count: Int) -> [Double] {
        switch self {
        case .column(let name):
            guard let column = values[name], column.count == count else {
                preconditionFailure("Expression.evaluate: no \(count) values for column '\(name)'")
            }
            return column
        case .number(let value):
            return [Double](repeating: value, count: count)
        case .negate(let operand):
            return operand.evaluate(values, count: count).map { -$0 }
        case .binary(let op, let left, let right):
            let a = left.evaluate(values, count: count), b = right.evaluate(values, count: count)
            switch op {
            case "+": return zip(a, b).map { $0 + $1 }
            case "-": return zip(a, b).map { $0 - $1 }
            case "*": return zip(a, b).map { $0 * $1 }
            case "/": return zip(a, b).map { $0 / $1 }
            case "^": return zip(a, b).map { Foundation.pow($0, $1) }
            default: preconditionFailure("Expression.evaluate: unknown operator '\(op)'")
            }
        case .call(let function, let arguments):
            precondition(arguments.count == 1, "Expression.evaluate: \(function)() takes one argument")
            let x = arguments[0].evaluate(values, count: count)
            switch function {
            case "log": return x.map { Foundation.log($0) }
            case "exp": return x.map { Foundation.exp($0) }
            case "sqrt": return x.map { $0.squareRoot() }
            case "abs": return x.map { Swift.abs($0) }
            case "scale": preconditionFailure("Expression.evaluate: scale() is resolved against the data before evaluation")
            default: preconditionFailure("Expression.evaluate: unknown function '\(function)'")
            }
        }
    }
}

// MARK: - Variable

/// One variable of a model term (R calls these the "factors" of a term).
///
/// Whether a bare column is numeric or categorical is decided by the data's type;
/// `factor(x)` is categorical and a transform numeric whatever the data.
///
/// ```swift
/// Variable.column("Days").name                                        // "Days"
/// Variable.factor("x").name                                           // "factor(x)"
/// Variable.transform("I(x^2)", .binary("^", .column("x"), .number(2))).name   // "I(x^2)"
/// ```
public enum Variable: Hashable, Sendable {
    /// A bare column; numeric or categorical decided by the data's type.
    case column(String)
    /// `factor(x)`: categorical always.
    case factor(String)
    /// `I(expr)`, or `log(x)` and the like: numeric always. The first field is the
    /// name R prints (its deparse), e.g. "I(x^2)", "log(x)", "I(x + 1)".
    case transform(String, Expression)

    /// The name as in lme4's coefficient names; non-syntactic column names are backquoted as R does.
    public var name: String {
        switch self {
        case .column(let column): return rName(column)
        case .factor(let column): return "factor(\(rName(column)))"
        case .transform(let name, _): return name
        }
    }

    /// The data columns the variable reads.
    public var columns: [String] {
        switch self {
        case .column(let column), .factor(let column): return [column]
        case .transform(_, let expression): return expression.columns
        }
    }
}

// MARK: - Grouping

/// The grouping factor of a random-effects term: the right of the bar.
///
/// ```swift
/// Grouping.factor(["cask", "batch"]).name                  // "cask:batch"
/// Grouping.multipleMembership(groups: ["s1", "s2"], weights: ["w1", "w2"]).name
///                                                           // "mm(s1, s2, weights = cbind(w1, w2))"
/// ```
public enum Grouping: Hashable, Sendable {
    /// One column, or the interaction of several: `(1|a:b)` → ["a","b"]; the nested b in `a/b` → ["b","a"].
    case factor([String])
    /// brms-style multiple membership: `mm(g1, g2, g3, weights = cbind(w1, w2, w3))`.
    ///
    /// Each row belongs to the groups named in the `groups` columns with the weights in the
    /// `weights` columns (equal counts). `weights` is empty when the formula gave none: then
    /// each membership of a row weighs 1/k, k the number of its non-missing memberships
    /// (brms's default of equal weights). brms also rescales given weights to sum to one
    /// in each row (its default `scale = TRUE`).
    case multipleMembership(groups: [String], weights: [String])

    /// lme4's group name: "g", "a:b", "cask:batch" (for batch/cask); for mm the normalised
    /// text "mm(g1, g2, g3, weights = cbind(w1, w2, w3))", or "mm(g1, g2, g3)" without weights.
    public var name: String {
        switch self {
        case .factor(let columns):
            return columns.map(rName).joined(separator: ":")
        case .multipleMembership(let groups, let weights):
            let list = groups.map(rName).joined(separator: ", ")
            if weights.isEmpty { return "mm(\(list))" }
            return "mm(\(list), weights = cbind(\(weights.map(rName).joined(separator: ", "))))"
        }
    }

    /// The data columns the grouping reads: the group columns, then any weight columns.
    public var columns: [String] {
        switch self {
        case .factor(let columns): return columns
        case .multipleMembership(let groups, let weights): return groups + weights
        }
    }
}

// MARK: - Random term

/// One random-effects term after expansion: effects varying over the levels of a grouping.
///
/// `(1 + Days | Subject)` gives effects `intercept: true, terms: [Days]` and grouping `Subject`.
public struct RandomTerm: Hashable, Sendable {
    /// The left of the bar: `(1 + x | g)` → intercept true, terms [x].
    public let effects: TermList
    public let grouping: Grouping

    public init(effects: TermList, grouping: Grouping) {
        self.effects = effects
        self.grouping = grouping
    }
}

// MARK: - Formula

/// A parsed lme4 model formula: response, fixed-effects terms and random-effects terms.
///
/// The syntax is lme4's: `response ~ terms`, with random-effects terms `(lhs | g)` and
/// `(lhs || g)` among the terms. See `parse(_:)` for what is accepted.
///
/// ```swift
/// let f = try Formula.parse("Reaction ~ Days + (Days | Subject)")
/// f.fixed.terms.map(\.name)          // ["Days"]
/// f.random[0].grouping.name          // "Subject"
/// f.columns                          // ["Reaction", "Days", "Subject"]
/// ```
public struct Formula: Sendable {
    public let text: String
    /// `.column("y")` usually; `log(y)` gives `.transform("log(y)", …)`.
    public let response: Variable
    public let fixed: TermList
    /// Expanded (`/`, `||`), in formula order.
    public let random: [RandomTerm]
    /// Every data column the formula uses, in order of first appearance (the weights last).
    public private(set) var columns: [String]
    /// The column of precision weights (lme4's `weights =`), nil for none: rows are scaled by
    /// √w, and a row whose weight is missing is dropped like one with a missing variable.
    public private(set) var weights: String?
    /// `cbind(successes, failures)`: the failures (the response is the successes); nil otherwise.
    public internal(set) var failures: Variable?
    /// `offset(…)` terms of the fixed part, added to the linear predictor with coefficient 1.
    public internal(set) var offsets: [Variable] = []
    /// Whether a string response of two values is read as 0 (the first in byte order) and 1: a
    /// binomial GLMM's factor or logical response (`allowingTwoLevelResponse()`).
    public internal(set) var twoLevelResponse = false

    /// The same model with a two-level string response read as 0/1.
    public func allowingTwoLevelResponse() -> Formula {
        var f = self
        f.twoLevelResponse = true
        return f
    }

    /// Throws for what only a GLMM (`--family`) fits: a `cbind()` response or an offset.
    public func requireGaussian() throws {
        if failures != nil {
            throw InputError("the response cbind(\(response.name), \(failures!.name)) is binomial: give --family binomial")
        }
        if let o = offsets.first {
            throw InputError("offset(\(o.name)) is supported for --family binomial or poisson; for a Gaussian model subtract it from the response")
        }
    }

    /// The level-1 variance model (`--residual-variance`), nil for a constant residual variance.
    public private(set) var residualVariance: ResidualVarianceModel?

    /// The same model with the residual variance `model`.
    public func withResidualVariance(_ model: ResidualVarianceModel) -> Formula {
        var f = self
        f.residualVariance = model
        if !f.columns.contains(model.column) { f.columns.append(model.column) }
        return f
    }

    /// The same model with precision weights from `column`.
    public func weighted(by column: String) -> Formula {
        var f = self
        f.weights = column
        if !f.columns.contains(column) { f.columns.append(column) }
        return f
    }

    /// The same model, also reading `extra` columns (a survey's weights, PSUs and strata), which
    /// do not make a row incomplete: what a missing value there means is the reader's to decide.
    public func reading(_ extra: [String]) -> Formula {
        var f = self
        for c in extra where !f.columns.contains(c) { f.columns.append(c) }
        return f
    }

    /// Parse and expand a formula; throws `InputError` naming the position at fault.
    ///
    /// - Terms are joined by `+`; `- 1` and `- 0` are the only subtractions. The intercept
    ///   is implicit; `0 +`, `+ 0` and `- 1` remove it, `1 +` and `- 0` keep it (R's rules).
    /// - Operators: `a*b` (a + b + a:b), `a:b`, `a/b` (a + a:b), `(a + b)^2`, parentheses.
    /// - Variables: columns (R identifiers or `` `backquoted names` ``), `factor(x)`,
    ///   `I(expr)`, and `log exp sqrt abs` of an expression.
    /// - Random terms: `(lhs | g)`, `(lhs || g)`; g is a column, `a:b`, `a/b`, or
    ///   `mm(g1, g2, weights = cbind(w1, w2))` (the weights may be omitted).
    public static func parse(_ text: String) throws -> Formula {
        var parser = try FormulaParser(text)
        return try parser.parseFormula()
    }

    init(text: String, response: Variable, fixed: TermList, random: [RandomTerm], columns: [String],
         failures: Variable? = nil, offsets: [Variable] = []) {
        self.text = text
        self.response = response
        self.failures = failures
        self.offsets = offsets
        self.fixed = fixed
        self.random = random
        self.columns = columns
    }
}

// MARK: - Syntax tree

/// A model expression as written, before expansion into terms (see `TermExpander`).
indirect enum ModelNode {
    case variable(Variable, at: Int)
    case number(Double, at: Int)
    case negate(ModelNode, at: Int)
    /// One of `: * /`.
    case binary(Character, ModelNode, ModelNode, at: Int)
    /// `first ± rest[0] ± rest[1] …`, held flat so that a long sum is not a deep tree.
    case sum(ModelNode, [SumOperand])
    case power(ModelNode, Int)
    case bar(BarNode)
    /// `offset(expr)`: no term; added to the linear predictor.
    case offset(Variable, at: Int)
}

/// One operand after the first of a sum: `+ node` or `- node`, the operator at `at`.
struct SumOperand {
    let op: Character
    let node: ModelNode
    let at: Int
}

/// A random-effects term as written: `(lhs | grouping)` or `(lhs || grouping)`.
struct BarNode {
    let lhs: ModelNode
    let grouping: GroupingNode
    let doubled: Bool
    /// The position of its opening parenthesis.
    let at: Int
}

/// The right of a bar as written.
enum GroupingNode {
    /// `a/b/c` as components, each a `:`-interaction of columns: [["a"], ["b"], ["c"]].
    case path([[String]])
    case membership(groups: [String], weights: [String])
}

/// The formula text, for error messages that point into it.
struct FormulaSource {
    let text: String

    /// An `InputError` of one line: `formula: <what> at position <n> in "<text>"`.
    func error(_ what: String, at position: Int) -> InputError {
        InputError("formula: \(what) at position \(position) in \"\(oneLine)\"")
    }

    /// The text with line breaks as spaces (one character each, so positions still match),
    /// cut after 200 characters.
    var oneLine: String {
        let line = String(text.prefix(200).map { $0.isNewline ? " " : $0 })
        return text.count > 200 ? line + "…" : line
    }
}

// MARK: - Parser

/// A recursive-descent parser of lme4 formulas, with R's operator precedence:
/// `~` < `+ -` < `* /` < `:` < unary `-` < `^`; `|` and `||` only inside parentheses.
struct FormulaParser {
    private struct Token {
        enum Kind: Equatable {
            case name(String)
            case number(Double)
            case symbol(String)
            case end
        }
        let kind: Kind
        /// 1-based character position.
        let position: Int
        /// The text as written, for messages.
        let text: String
    }

    private let source: FormulaSource
    private let tokens: [Token]
    private var index = 0
    /// The depth of the tree being built: nesting (parentheses, functions, unary minus, `^`)
    /// plus the operators of the chain under way (`a:b:c` is a tree of depth 2).
    private var depth = 0
    /// The deepest tree accepted: every later stage walks the tree recursively, so deeper
    /// input would overflow the stack instead of failing with a message. (Sums are flat.)
    static let maximumDepth = 200
    /// Data columns in order of first appearance.
    private var columns: [String] = []

    init(_ text: String) throws {
        source = FormulaSource(text: text)
        tokens = try Self.tokenize(Array(text), source: source)
    }

    mutating func parseFormula() throws -> Formula {
        guard current.kind != .end else { throw InputError("formula: the formula is empty") }
        if current.kind == .symbol("~") { throw source.error("missing response before '~'", at: current.position) }
        guard tokens.contains(where: { $0.kind == .symbol("~") }) else {
            throw InputError("formula: missing '~' between response and terms in \"\(source.oneLine)\"")
        }
        let (response, failures) = try parseResponse()
        guard current.kind == .symbol("~") else { throw source.error("expected '~'", at: current.position) }
        advance()
        guard current.kind != .end else { throw source.error("missing terms after '~'", at: current.position) }
        let rhs = try parseSum()
        switch current.kind {
        case .end: break
        case .symbol("|"), .symbol("||"):
            throw source.error("'\(current.text)' outside parentheses (write (lhs \(current.text) g))", at: current.position)
        case .symbol(")"):
            throw source.error("unmatched ')'", at: current.position)
        default:
            throw source.error("unexpected '\(current.text)'", at: current.position)
        }
        let expander = TermExpander(source: source)
        let (fixed, bars, offsets) = try expander.fixedPart(rhs, response: response)
        let random = try bars.flatMap { try expander.randomTerms($0) }
        return Formula(text: source.text, response: response, fixed: fixed, random: random, columns: columns,
                       failures: failures, offsets: offsets)
    }

    // MARK: Tokens

    private var current: Token { tokens[index] }

    private mutating func advance() {
        if current.kind != .end { index += 1 }
    }

    private func peek(_ offset: Int) -> Token {
        tokens[min(index + offset, tokens.count - 1)]
    }

    /// Consume `symbol` if it is next.
    private mutating func accept(_ symbol: String) -> Bool {
        guard current.kind == .symbol(symbol) else { return false }
        advance()
        return true
    }

    private mutating func expect(_ symbol: String) throws {
        guard accept(symbol) else { throw source.error("expected '\(symbol)'", at: current.position) }
    }

    /// "unexpected 'x'" or "unexpected end of formula", for the current token.
    private var unexpected: String {
        current.kind == .end ? "unexpected end of formula" : "unexpected '\(current.text)'"
    }

    /// One level deeper; throws when past `maximumDepth`. Pair with `depth -= 1`.
    private mutating func descend(at position: Int) throws {
        depth += 1
        if depth > Self.maximumDepth {
            throw source.error("nested too deeply (more than \(Self.maximumDepth) levels of parentheses, functions, operators or signs)",
                               at: position)
        }
    }

    private mutating func use(_ column: String) {
        if !columns.contains(column) { columns.append(column) }
    }

    private static func tokenize(_ chars: [Character], source: FormulaSource) throws -> [Token] {
        var tokens: [Token] = []
        var i = 0
        func isDigit(_ c: Character) -> Bool { c.isASCII && c.isNumber }
        while i < chars.count {
            let c = chars[i], start = i
            if c.isWhitespace {
                i += 1
            } else if c == "`" {
                guard let close = chars[(i + 1)...].firstIndex(of: "`") else {
                    throw source.error("unterminated '`'", at: i + 1)
                }
                guard close > i + 1 else { throw source.error("empty name ``", at: i + 1) }
                i = close + 1
                tokens.append(Token(kind: .name(String(chars[(start + 1)..<close])), position: start + 1,
                                    text: String(chars[start..<i])))
            } else if isDigit(c) || (c == "." && i + 1 < chars.count && isDigit(chars[i + 1])) {
                while i < chars.count, isDigit(chars[i]) || chars[i] == "." { i += 1 }
                if i < chars.count, chars[i] == "e" || chars[i] == "E" {
                    i += 1
                    if i < chars.count, chars[i] == "+" || chars[i] == "-" { i += 1 }
                    while i < chars.count, isDigit(chars[i]) { i += 1 }
                }
                let text = String(chars[start..<i])
                guard let value = Double(text) else { throw source.error("malformed number '\(text)'", at: start + 1) }
                tokens.append(Token(kind: .number(value), position: start + 1, text: text))
            } else if c.isLetter || c == "." {
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "." || chars[i] == "_" {
                    i += 1
                }
                let text = String(chars[start..<i])
                tokens.append(Token(kind: .name(text), position: start + 1, text: text))
            } else if c == "|" {
                i += (i + 1 < chars.count && chars[i + 1] == "|") ? 2 : 1
                let text = String(chars[start..<i])
                tokens.append(Token(kind: .symbol(text), position: start + 1, text: text))
            } else if "~+-*/:^(),=".contains(c) {
                i += 1
                tokens.append(Token(kind: .symbol(String(c)), position: start + 1, text: String(c)))
            } else {
                throw source.error("unexpected character '\(c)'", at: i + 1)
            }
        }
        tokens.append(Token(kind: .end, position: chars.count + 1, text: ""))
        return tokens
    }

    // MARK: Model expressions

    /// response := variable | 'cbind' '(' expr ',' expr ')' (successes and failures of a binomial response)
    private mutating func parseResponse() throws -> (Variable, failures: Variable?) {
        guard case .name(let name) = current.kind else { throw source.error("expected a response column", at: current.position) }
        let at = current.position
        if name == "cbind", peek(1).kind == .symbol("(") {
            advance()
            advance()
            let successes = try parseExpressionVariable()
            guard accept(",") else { throw source.error("cbind() takes two arguments: successes, failures", at: current.position) }
            let failures = try parseExpressionVariable()
            guard accept(")") else { throw source.error("cbind() takes two arguments: successes, failures", at: current.position) }
            return (successes, failures)
        }
        let response = try parseVariable()
        if case .factor = response { throw source.error("the response must be numeric, not factor()", at: at) }
        return (response, nil)
    }

    /// An expression as a variable: a bare column, or a transform named by R's deparse of it.
    private mutating func parseExpressionVariable() throws -> Variable {
        let (expression, text) = try parseExpression()
        if case .column(let c) = expression { return .column(c) }
        return .transform(text, expression)
    }

    /// sum := product (('+' | '-') product)*
    private mutating func parseSum() throws -> ModelNode {
        let first = try parseProduct()
        var rest: [SumOperand] = []
        while case .symbol(let op) = current.kind, op == "+" || op == "-" {
            let at = current.position
            advance()
            rest.append(SumOperand(op: Character(op), node: try parseProduct(), at: at))
        }
        return rest.isEmpty ? first : .sum(first, rest)
    }

    /// product := interaction (('*' | '/') interaction)*
    private mutating func parseProduct() throws -> ModelNode {
        let entry = depth
        defer { depth = entry }
        var node = try parseInteraction()
        while case .symbol(let op) = current.kind, op == "*" || op == "/" {
            let at = current.position
            try descend(at: at)
            advance()
            node = .binary(Character(op), node, try parseInteraction(), at: at)
        }
        return node
    }

    /// interaction := unary (':' unary)*
    private mutating func parseInteraction() throws -> ModelNode {
        let entry = depth
        defer { depth = entry }
        var node = try parseUnary()
        while current.kind == .symbol(":") {
            let at = current.position
            try descend(at: at)
            advance()
            node = .binary(":", node, try parseUnary(), at: at)
        }
        return node
    }

    /// unary := '-' unary | power
    private mutating func parseUnary() throws -> ModelNode {
        let at = current.position
        guard accept("-") else { return try parsePower() }
        try descend(at: at)
        defer { depth -= 1 }
        return .negate(try parseUnary(), at: at)
    }

    /// power := primary ('^' whole number)?
    private mutating func parsePower() throws -> ModelNode {
        let base = try parsePrimary()
        guard accept("^") else { return base }
        guard case .number(let value) = current.kind, value >= 1, value == value.rounded(), value < 1000 else {
            throw source.error("'^' needs a positive whole number", at: current.position)
        }
        advance()
        return .power(base, Int(value))
    }

    /// primary := '(' sum ')' | '(' sum ('|' | '||') grouping ')' | number | variable
    private mutating func parsePrimary() throws -> ModelNode {
        let at = current.position
        switch current.kind {
        case .symbol("("):
            try descend(at: at)
            defer { depth -= 1 }
            advance()
            let inner = try parseSum()
            if case .symbol(let bar) = current.kind, bar == "|" || bar == "||" {
                advance()
                let grouping = try parseGrouping()
                try expect(")")
                return .bar(BarNode(lhs: inner, grouping: grouping, doubled: bar == "||", at: at))
            }
            try expect(")")
            return inner
        case .number(let value):
            advance()
            return .number(value, at: at)
        case .name("offset") where peek(1).kind == .symbol("("):
            advance()
            advance()
            try descend(at: at)
            defer { depth -= 1 }
            let variable = try parseExpressionVariable()
            try expect(")")
            return .offset(variable, at: at)
        case .name:
            return .variable(try parseVariable(), at: at)
        case .symbol("|"), .symbol("||"):
            throw source.error("expected terms before '\(current.text)'", at: at)
        default:
            throw source.error(current.kind == .end ? "expected a term" : "\(unexpected) where a term belongs", at: at)
        }
    }

    /// variable := name | 'factor' '(' name ')' | 'I' '(' expr ')' | function '(' expr ')'
    private mutating func parseVariable() throws -> Variable {
        guard case .name(let name) = current.kind else { throw source.error(unexpected, at: current.position) }
        let at = current.position
        advance()
        guard current.kind == .symbol("(") else {
            if name == "." { throw source.error("'.' (all other columns) is not supported", at: at) }
            use(name)
            return .column(name)
        }
        try descend(at: at)
        defer { depth -= 1 }
        advance()
        switch name {
        case "factor":
            guard case .name(let column) = current.kind, peek(1).kind == .symbol(")") else {
                throw source.error("factor() takes one column name", at: at)
            }
            advance()
            advance()
            use(column)
            return .factor(column)
        case "I":
            let (expression, text) = try parseExpression()
            try expect(")")
            return .transform("I(\(text))", expression)
        case _ where Expression.functions.contains(name):
            let (expression, text) = try parseExpression()
            try expect(")")
            return .transform("\(name)(\(text))", .call(name, [expression]))
        case "mm":
            throw source.error("mm() is only allowed as a grouping factor, after '|'", at: at)
        default:
            throw source.error("unknown function '\(name)' (known: I, factor, log, exp, sqrt, abs, scale, offset)", at: at)
        }
    }

    // MARK: Grouping factors

    /// grouping := mm(...) | component ('/' component)*;  component := name (':' name)*
    private mutating func parseGrouping() throws -> GroupingNode {
        if current.kind == .name("mm"), peek(1).kind == .symbol("(") { return try parseMembership() }
        var path: [[String]] = []
        repeat {
            var component: [String] = []
            repeat {
                guard case .name(let column) = current.kind else {
                    let what = path.isEmpty && component.isEmpty ? "expected a grouping factor after the bar"
                        : "expected a grouping column"
                    throw source.error(what, at: current.position)
                }
                if peek(1).kind == .symbol("(") {
                    throw source.error("a grouping factor must be columns joined by ':' or '/', not '\(column)(...)'",
                                       at: current.position)
                }
                advance()
                use(column)
                component.append(column)
            } while accept(":")
            path.append(component)
        } while accept("/")
        return .path(path)
    }

    /// mm(g1, g2, ..., weights = cbind(w1, w2, ...)), the weights optional.
    private mutating func parseMembership() throws -> GroupingNode {
        let at = current.position
        advance()
        advance()
        var groups: [String] = []
        var weights: [String]?
        if current.kind != .symbol(")") {
            repeat {
                guard case .name(let name) = current.kind else {
                    throw source.error("expected a grouping column in mm()", at: current.position)
                }
                let nameAt = current.position
                advance()
                if accept("=") {
                    guard name == "weights" else {
                        throw source.error("unknown argument '\(name)' of mm() (only weights = cbind(...))", at: nameAt)
                    }
                    weights = try parseWeights()
                } else {
                    guard current.kind != .symbol("(") else {
                        throw source.error("mm() takes grouping column names", at: nameAt)
                    }
                    use(name)
                    groups.append(name)
                }
            } while accept(",")
        }
        try expect(")")
        guard !groups.isEmpty else { throw source.error("mm() needs at least one grouping column", at: at) }
        if let weights, weights.count != groups.count {
            let term = Grouping.multipleMembership(groups: groups, weights: weights).name
            throw InputError("formula: mm() has \(groups.count) groups but \(weights.count) weights in \"\(term)\"")
        }
        return .membership(groups: groups, weights: weights ?? [])
    }

    /// cbind(w1, w2, ...)
    private mutating func parseWeights() throws -> [String] {
        guard current.kind == .name("cbind"), peek(1).kind == .symbol("(") else {
            throw source.error("mm() weights must be cbind(column, ...)", at: current.position)
        }
        advance()
        advance()
        var weights: [String] = []
        repeat {
            guard case .name(let column) = current.kind, peek(1).kind != .symbol("(") else {
                throw source.error("expected a weight column in cbind()", at: current.position)
            }
            advance()
            use(column)
            weights.append(column)
        } while accept(",")
        try expect(")")
        return weights
    }

    // MARK: Numeric expressions (inside I() and functions)

    /// expr := term (('+' | '-') term)*, returned with R's deparse of it.
    private mutating func parseExpression() throws -> (Expression, String) {
        let entry = depth
        defer { depth = entry }
        try descend(at: current.position)
        var (node, text) = try parseExpressionTerm()
        while case .symbol(let op) = current.kind, op == "+" || op == "-" {
            try descend(at: current.position)
            advance()
            let (right, rightText) = try parseExpressionTerm()
            node = .binary(Character(op), node, right)
            text += " \(op) \(rightText)"
        }
        return (node, text)
    }

    /// term := unary (('*' | '/') unary)*; R deparses `*` with spaces and `/` without.
    private mutating func parseExpressionTerm() throws -> (Expression, String) {
        let entry = depth
        defer { depth = entry }
        var (node, text) = try parseExpressionUnary()
        while case .symbol(let op) = current.kind, op == "*" || op == "/" {
            try descend(at: current.position)
            advance()
            let (right, rightText) = try parseExpressionUnary()
            node = .binary(Character(op), node, right)
            text += op == "*" ? " * \(rightText)" : "/\(rightText)"
        }
        return (node, text)
    }

    /// unary := '-' unary | power
    private mutating func parseExpressionUnary() throws -> (Expression, String) {
        let at = current.position
        guard accept("-") else { return try parseExpressionPower() }
        try descend(at: at)
        defer { depth -= 1 }
        let (operand, text) = try parseExpressionUnary()
        return (.negate(operand), "-\(text)")
    }

    /// power := primary ('^' unary)?  (right-associative, binding tighter than a unary minus on its left)
    private mutating func parseExpressionPower() throws -> (Expression, String) {
        let (base, text) = try parseExpressionPrimary()
        let at = current.position
        guard accept("^") else { return (base, text) }
        try descend(at: at)
        defer { depth -= 1 }
        let (exponent, exponentText) = try parseExpressionUnary()
        return (.binary("^", base, exponent), "\(text)^\(exponentText)")
    }

    /// primary := number | column | function '(' expr ')' | 'I' '(' expr ')' | '(' expr ')'
    private mutating func parseExpressionPrimary() throws -> (Expression, String) {
        let at = current.position
        switch current.kind {
        case .number(let value):
            advance()
            return (.number(value), rNumber(value))
        case .symbol("("):
            advance()
            let (inner, text) = try parseExpression()
            try expect(")")
            return (inner, "(\(text))")
        case .name(let name):
            advance()
            guard accept("(") else {
                if name == "." { throw source.error("'.' (all other columns) is not supported", at: at) }
                use(name)
                return (.column(name), rName(name))
            }
            guard name == "I" || Expression.functions.contains(name) else {
                throw source.error("unknown function '\(name)' (known: I, log, exp, sqrt, abs, scale)", at: at)
            }
            let (argument, text) = try parseExpression()
            try expect(")")
            return (name == "I" ? argument : .call(name, [argument]), "\(name)(\(text))")
        default:
            throw source.error(current.kind == .end ? "expected an expression" : "\(unexpected) in an expression",
                               at: at)
        }
    }
}

// MARK: - R's spelling of names and numbers

/// A column name as R deparses it: backquoted unless it is a syntactic name.
func rName(_ name: String) -> String {
    rIsSyntactic(name) ? name : "`\(name)`"
}

private let rReserved: Set<String> = [
    "if", "else", "repeat", "while", "function", "for", "next", "break", "in",
    "TRUE", "FALSE", "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "NA_complex_",
]

/// R's rule: letters, digits, `.` and `_`, starting with a letter or a `.` not followed by a digit; not reserved.
private func rIsSyntactic(_ name: String) -> Bool {
    let chars = Array(name)
    guard let first = chars.first, !rReserved.contains(name) else { return false }
    guard first.isLetter || first == "." else { return false }
    if first == ".", chars.count > 1, chars[1].isASCII, chars[1].isNumber { return false }
    return chars.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" }
}

/// A number as R deparses it: 15 significant digits, fixed or scientific notation,
/// whichever is narrower (fixed on a tie), e.g. 2 → "2", 1e5 → "1e+05", 0.001 → "0.001".
func rNumber(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value < 0 ? "-Inf" : "Inf" }
    if value == 0 { return "0" }
    let scientific = String(format: "%.14e", value)    // "-1.23450000000000e+05"
    let parts = scientific.split(separator: "e")
    let exponent = Int(parts[1])!
    var digits = parts[0].filter { $0.isNumber }
    while digits.count > 1, digits.last == "0" { digits.removeLast() }
    let significant = digits.count, sign = value < 0 ? 1 : 0
    let decimals = max(0, significant - 1 - exponent)
    let fixedWidth = sign + max(exponent, 0) + 1 + (decimals > 0 ? decimals + 1 : 0)
    let scientificWidth = sign + (significant > 1 ? significant + 1 : 1) + (abs(exponent) >= 100 ? 5 : 4)
    if fixedWidth <= scientificWidth { return String(format: "%.\(decimals)f", value) }
    let mantissa = significant > 1 ? "\(digits.first!).\(digits.dropFirst())" : digits
    return "\(sign == 1 ? "-" : "")\(mantissa)e\(exponent < 0 ? "-" : "+")\(String(format: "%02d", abs(exponent)))"
}
