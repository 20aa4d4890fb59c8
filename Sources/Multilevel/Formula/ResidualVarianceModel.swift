import Foundation

/// A level-1 variance that is not constant (`--residual-variance`), as nlme's variance
/// functions: row i's residual SD is σ·s_i, with
///
/// - `~ 1 | g` (nlme's `varIdent(form = ~ 1 | g)`): s_i = δ_g for row i's level g of a factor,
///   δ = 1 for the first level (in byte order), the other δ estimated;
/// - `~ x` or `varExp(~ x)` (nlme's `varExp`): s_i = exp(t·x_i);
/// - `varPower(~ x)` (nlme's `varPower`): s_i = |x_i|^t (x ≠ 0).
///
/// The fit is a weighted one with precision weights w_i = s_i⁻², its criterion including
/// −Σ log w_i, for the variance parameters that minimise it.
public enum ResidualVarianceModel: Sendable, Equatable {
    case groups(String)
    case exponential(String)
    case power(String)

    /// The data column it reads.
    public var column: String {
        switch self { case .groups(let c), .exponential(let c), .power(let c): return c }
    }

    /// nlme's name of the variance function.
    public var nlmeName: String {
        switch self { case .groups: return "varIdent"; case .exponential: return "varExp"; case .power: return "varPower" }
    }

    /// As the user would write it for nlme: `~1 | g`, `~x`.
    public var formulaText: String {
        switch self {
        case .groups(let c): return "~1 | \(rName(c))"
        case .exponential(let c), .power(let c): return "~\(rName(c))"
        }
    }

    /// Parses `~ 1 | g`, `varIdent(~ 1 | g)`, `~ x`, `varExp(~ x)` or `varPower(~ x)` (also with
    /// nlme's `form =`); a column name may be backquoted.
    public static func parse(_ text: String) throws -> ResidualVarianceModel {
        var body = text.trimmingCharacters(in: .whitespaces)
        var function: String?
        for name in ["varIdent", "varExp", "varPower"] where body.hasPrefix(name + "(") && body.hasSuffix(")") {
            function = name
            body = String(body.dropFirst(name.count + 1).dropLast()).trimmingCharacters(in: .whitespaces)
            if body.hasPrefix("form") {
                let rest = body.dropFirst(4).trimmingCharacters(in: .whitespaces)
                if rest.hasPrefix("=") { body = rest.dropFirst().trimmingCharacters(in: .whitespaces) }
            }
        }
        let usage = "--residual-variance must be \"~ 1 | g\" (a variance per level of g), \"~ x\" or \"varExp(~ x)\" "
            + "(SD exp(t·x)), or \"varPower(~ x)\" (SD |x|^t); got \"\(text)\""
        guard body.hasPrefix("~") else { throw InputError(usage) }
        body = body.dropFirst().trimmingCharacters(in: .whitespaces)
        func columnName(_ s: String) throws -> String {
            let t = s.trimmingCharacters(in: .whitespaces)
            if t.count >= 2, t.hasPrefix("`"), t.hasSuffix("`") { return String(t.dropFirst().dropLast()) }
            guard let first = t.first, first.isLetter || first == "." || first == "_",
                  t.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" }) else { throw InputError(usage) }
            return t
        }
        if let bar = body.firstIndex(of: "|") {
            guard body[..<bar].trimmingCharacters(in: .whitespaces) == "1", function == nil || function == "varIdent" else {
                throw InputError(usage)
            }
            return .groups(try columnName(String(body[body.index(after: bar)...])))
        }
        let column = try columnName(body)
        switch function {
        case nil, "varExp": return .exponential(column)
        case "varPower": return .power(column)
        default: throw InputError(usage)
        }
    }

    /// Row weights w = s⁻² for the parameter t of `~ x` models, or nil where s is 0 or not finite.
    func weight(_ x: Double, parameter t: Double) -> Double? {
        let w: Double
        switch self {
        case .groups: preconditionFailure("a group's weight is δ_g⁻²")
        case .exponential: w = exp(-2 * t * x)
        case .power: w = pow(abs(x), -2 * t)
        }
        return w.isFinite && w > 0 ? w : nil
    }
}
