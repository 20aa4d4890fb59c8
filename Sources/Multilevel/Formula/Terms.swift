/// A main effect (one variable) or an interaction (several).
///
/// The variables are in R's order: by first appearance in the model part, which is the
/// written order unless a variable was written earlier elsewhere. So `y ~ a + b + b:a`
/// has the term "a:b", as R and lme4 name it.
///
/// ```swift
/// Term([.column("standLRT"), .column("schavg")]).name    // "standLRT:schavg"
/// ```
public struct Term: Hashable, Sendable {
    public let variables: [Variable]

    public init(_ variables: [Variable]) {
        self.variables = variables
    }

    /// The variables' names joined by ":".
    public var name: String { variables.map(\.name).joined(separator: ":") }
}

/// The terms of a model part, deduplicated, in R's order: by degree (number of
/// variables), then first appearance in the expanded formula.
///
/// `standLRT*schavg + sex + schgend` gives standLRT, schavg, sex, schgend, standLRT:schavg.
public struct TermList: Hashable, Sendable {
    public let intercept: Bool
    public let terms: [Term]

    /// Terms as given; `Formula.parse` makes them deduplicated and ordered.
    public init(intercept: Bool, terms: [Term]) {
        self.intercept = intercept
        self.terms = terms
    }
}

/// Expands model expressions into terms as R's `terms.formula` does (`EncodeVars` in
/// R's model.c), and bar terms into random terms as lme4 does (`||`, then `/`).
///
/// A term is held as the sorted indices of its variables in the part's variable table,
/// which lists variables by first appearance: sorting gives R's order within a term, and
/// comparing index lists compares terms as sets.
struct TermExpander {
    let source: FormulaSource

    /// A part of a formula, encoded.
    private struct Part {
        var terms: [[Int]] = []
        /// Set by `1`, `0`, `- 1`, `- 0`; the last one written wins.
        var intercept: Bool?
        var interceptAt = 0
        /// Random-effects terms found among the summands.
        var bars: [BarNode] = []
        /// `offset(…)` summands.
        var offsets: [(Variable, at: Int)] = []
    }

    /// The fixed part: the right side without its bar terms and offsets, those bar terms in
    /// order, and the offsets.
    func fixedPart(_ rhs: ModelNode, response: Variable) throws -> (TermList, [BarNode], [Variable]) {
        var variables = [response]
        collect(rhs, into: &variables)
        let part = try encode(rhs, variables)
        return (termList(part, variables), part.bars, part.offsets.map(\.0))
    }

    /// The random terms of `(lhs | g)` or `(lhs || g)`, in lme4's expansion order:
    /// `(x || a/b)` gives (1|a), (1|b:a), (0+x|a), (0+x|b:a).
    func randomTerms(_ bar: BarNode) throws -> [RandomTerm] {
        var variables: [Variable] = []
        collect(bar.lhs, into: &variables)
        let part = try encode(bar.lhs, variables)
        if let nested = part.bars.first {
            throw source.error("a (… | …) term cannot be inside another", at: nested.at)
        }
        if let offset = part.offsets.first {
            throw source.error("offset() belongs to the fixed part, not inside a (… | …) term", at: offset.at)
        }
        let effects = termList(part, variables)
        guard effects.intercept || !effects.terms.isEmpty else {
            throw source.error("the random-effects term has no effects", at: bar.at)
        }
        let pieces = bar.doubled
            ? (effects.intercept ? [TermList(intercept: true, terms: [])] : [])
                + effects.terms.map { TermList(intercept: false, terms: [$0]) }
            : [effects]
        let groupings = bar.grouping.expanded
        return pieces.flatMap { piece in groupings.map { RandomTerm(effects: piece, grouping: $0) } }
    }

    /// The variables of `node` not yet in `variables`, in written order (R's variable list);
    /// bar terms are skipped, as lme4 removes them before `terms.formula` sees the formula.
    private func collect(_ node: ModelNode, into variables: inout [Variable]) {
        switch node {
        case .variable(let variable, _):
            if !variables.contains(variable) { variables.append(variable) }
        case .number, .bar, .offset:
            break
        case .negate(let operand, _), .power(let operand, _):
            collect(operand, into: &variables)
        case .binary(_, let left, let right, _):
            collect(left, into: &variables)
            collect(right, into: &variables)
        case .sum(let first, let rest):
            collect(first, into: &variables)
            for operand in rest { collect(operand.node, into: &variables) }
        }
    }

    private func termList(_ part: Part, _ variables: [Variable]) -> TermList {
        let ordered = part.terms.enumerated()
            .sorted { ($0.element.count, $0.offset) < ($1.element.count, $1.offset) }
            .map { Term($0.element.map { variables[$0] }) }
        return TermList(intercept: part.intercept ?? true, terms: ordered)
    }

    private func encode(_ node: ModelNode, _ variables: [Variable]) throws -> Part {
        switch node {
        case .variable(let variable, _):
            return Part(terms: [[variables.firstIndex(of: variable)!]])
        case .number(let value, let at):
            guard value == 0 || value == 1 else {
                throw source.error("unexpected number \(rNumber(value)) (only 0 and 1 may stand as terms)", at: at)
            }
            return Part(intercept: value == 1, interceptAt: at)
        case .negate(let operand, let at):
            return try removal(operand, at: at)
        case .bar(let bar):
            return Part(bars: [bar])
        case .offset(let variable, let at):
            return Part(offsets: [(variable, at)])
        case .power(let base, let exponent):
            let terms = try operand(base, of: "^", variables)
            var result = terms
            // Past the number of variables no new term can appear.
            let distinct = Set(terms.joined()).count
            for _ in 1..<min(exponent, max(distinct, 1)) { result = unique(interact(terms, result)) }
            return Part(terms: result)
        case .sum(let first, let rest):
            var part = try encode(first, variables)
            var seen = Set(part.terms)
            for operand in rest {
                if operand.op == "-" {
                    let removed = try removal(operand.node, at: operand.at)
                    part.intercept = removed.intercept
                    part.interceptAt = removed.interceptAt
                    continue
                }
                let b = try encode(operand.node, variables)
                for t in b.terms where seen.insert(t).inserted { part.terms.append(t) }
                if b.intercept != nil {
                    part.intercept = b.intercept
                    part.interceptAt = b.interceptAt
                }
                part.bars += b.bars
                part.offsets += b.offsets
            }
            return part
        case .binary(let op, let left, let right, _):
            let a = try operand(left, of: op, variables), b = try operand(right, of: op, variables)
            switch op {
            case ":": return Part(terms: unique(interact(a, b)))
            case "*": return Part(terms: unique(a + b + interact(a, b)))
            default: return Part(terms: unique(a + interact([Array(Set(a.joined())).sorted()], b)))   // "/"
            }
        }
    }

    /// `- 1` or `- 0`, the only removals: R sets the intercept to false or true.
    private func removal(_ node: ModelNode, at: Int) throws -> Part {
        guard case .number(let value, _) = node, value == 0 || value == 1 else {
            throw source.error("only 1 or 0 can be removed with '-'", at: at)
        }
        return Part(intercept: value == 0, interceptAt: at)
    }

    /// The terms of an operand of `: * / ^`, which must not hold `0`, `1` or a bar term.
    private func operand(_ node: ModelNode, of op: Character, _ variables: [Variable]) throws -> [[Int]] {
        let part = try encode(node, variables)
        if let bar = part.bars.first {
            throw source.error("a (… | …) term can only be added with '+', not used with '\(op)'", at: bar.at)
        }
        if let offset = part.offsets.first {
            throw source.error("offset() can only be added with '+', not used with '\(op)'", at: offset.at)
        }
        if part.intercept != nil {
            throw source.error("'0' or '1' cannot be used with '\(op)'", at: part.interceptAt)
        }
        return part.terms
    }

    /// Every term of `a` with every term of `b`, `a`'s outer.
    private func interact(_ a: [[Int]], _ b: [[Int]]) -> [[Int]] {
        a.flatMap { left in b.map { Array(Set(left + $0)).sorted() } }
    }

    /// Drop repeated terms, keeping the first (R's `TrimRepeats`).
    private func unique(_ terms: [[Int]]) -> [[Int]] {
        var seen = Set<[Int]>()
        return terms.filter { seen.insert($0).inserted }
    }
}

extension GroupingNode {
    /// The groupings after lme4's `/` expansion: `a/b/c` → a, b:a, c:b:a.
    var expanded: [Grouping] {
        switch self {
        case .path(let components):
            var nested: [String] = []
            return components.map { component in
                nested = component + nested
                return .factor(nested)
            }
        case .membership(let groups, let weights):
            return [.multipleMembership(groups: groups, weights: weights)]
        }
    }
}
