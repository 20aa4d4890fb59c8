import Foundation

/// One value of a categorical column: a string, or a number (a numeric column used as a factor).
///
/// Strings are equal only when their bytes are (`ExactString`): labels are the bytes in the file.
enum LevelValue: Hashable {
    case string(String)
    case number(Double)

    static func == (a: LevelValue, b: LevelValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return ExactString(x) == ExactString(y)
        case (.number(let x), .number(let y)): return x == y
        default: return false
        }
    }

    func hash(into hasher: inout Hasher) {
        switch self {
        case .string(let s): hasher.combine(ExactString(s))
        case .number(let x): hasher.combine(x)
        }
    }

    /// The level's name: the string, or the number as R's `as.character` writes it.
    var name: String {
        switch self {
        case .string(let s): return s
        case .number(let x): return rLevelName(x)
        }
    }
}

/// The levels of one categorical variable or grouping factor, collected from the data.
///
/// String values sort in the byte order of the file's bytes (R's C-locale sort); numeric values sort numerically and
/// are named as R's `as.character` names them (`1`, `2.5`, `1e+05`).
struct LevelSet {
    private var strings: Set<ExactString> = []
    private var numbers: Set<Double> = []

    mutating func insert(_ value: LevelValue) {
        switch value {
        case .string(let s): strings.insert(ExactString(s))
        case .number(let x): numbers.insert(x)
        }
    }

    /// Adds every value of `other`.
    mutating func formUnion(_ other: LevelSet) {
        strings.formUnion(other.strings)
        numbers.formUnion(other.numbers)
    }

    /// The values in level order.
    func sorted() -> [LevelValue] {
        numbers.sorted().map(LevelValue.number)
            + strings.map { ($0.value.fileBytes, $0.value) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
                .map { LevelValue.string($0.1) }
    }
}

/// Maps a factor's values to 0-based level codes, and codes to level names.
struct LevelIndex {
    let names: [String]
    private var stringCodes: [ExactString: Int32] = [:]
    private var numberCodes: [Double: Int32] = [:]

    init(_ set: LevelSet) { self.init(values: set.sorted()) }

    init(values: [LevelValue]) {
        names = values.map(\.name)
        for (i, v) in values.enumerated() {
            switch v {
            case .string(let s): stringCodes[ExactString(s)] = Int32(i)
            case .number(let x): numberCodes[x] = Int32(i)
            }
        }
    }

    /// The code of a value, or −1 for a value not among the levels.
    func code(_ value: LevelValue) -> Int32 {
        switch value {
        case .string(let s): return stringCodes[ExactString(s)] ?? -1
        case .number(let x): return numberCodes[x] ?? -1
        }
    }

    /// The codes of a column's values at `rows` (−1 for a missing value or one not among the levels).
    func codes(_ column: CategoricalValues, rows: [Int]) -> [Int32] {
        switch column {
        case .strings(let s): return rows.map { s[$0].flatMap { stringCodes[ExactString($0)] } ?? -1 }
        case .numbers(let x): return rows.map { numberCodes[x[$0]] ?? -1 }
        }
    }
}

/// The levels of an interaction grouping `a:b:…`: the observed combinations, ordered by a's
/// level, then b's (R's `a:b` on factors), and named `la:lb`.
struct InteractionIndex {
    let components: [LevelIndex]
    let names: [String]
    private let codes: [[Int32]: Int32]

    init(components: [LevelIndex], observed: Set<[LevelValue]>) {
        self.components = components
        let keys = observed.map { key in key.enumerated().map { components[$0.offset].code($0.element) } }
            .sorted { $0.lexicographicallyPrecedes($1) }
        names = keys.map { key in key.enumerated().map { components[$0.offset].names[Int($0.element)] }.joined(separator: ":") }
        var d: [[Int32]: Int32] = [:]
        for (i, k) in keys.enumerated() { d[k] = Int32(i) }
        codes = d
    }

    /// The code of a combination of component codes, or −1 if it was not observed.
    func code(_ componentCodes: [Int32]) -> Int32 { codes[componentCodes] ?? -1 }
}

/// R's `as.character` of a double: up to 15 significant digits, fixed or scientific
/// notation, whichever is shorter (R's default `scipen = 0`).
func rLevelName(_ x: Double) -> String {
    if x.isNaN { return "NaN" }
    if x.isInfinite { return x > 0 ? "Inf" : "-Inf" }
    if x == 0 { return "0" }
    if x == x.rounded(), abs(x) < 1e15 { return rIntegerName(Int64(x)) }
    return rFormattedName(x)
}

/// `rLevelName` through C's formatting: the fewest significant digits that give x back.
func rFormattedName(_ x: Double) -> String {
    // Fewest significant digits (≤ 15) that reproduce x to 15 digits.
    var digits = 1
    let target = String(format: "%.14e", x)
    while digits < 15 {
        if Double(String(format: "%.\(digits - 1)e", x)).map({ String(format: "%.14e", $0) }) == target { break }
        digits += 1
    }
    // C's %e already writes R's exponent form: 1e+05, 2.5e-07.
    let sci = String(format: "%.\(digits - 1)e", x)
    let exponent = Int(sci.split(separator: "e")[1])!
    let fixed = String(format: "%.\(max(0, digits - 1 - exponent))f", x)
    return fixed.count <= sci.count ? fixed : sci
}

/// `rLevelName` of a whole number below 10¹⁵ in magnitude, without formatting through C (grouping
/// factors coded as numbers have as many names as levels): its digits, or R's scientific form
/// `d.ddde+XX` of its significant digits when that is shorter (100000 → "1e+05").
private func rIntegerName(_ n: Int64) -> String {
    let fixed = String(n)
    let digits = n < 0 ? fixed.dropFirst() : Substring(fixed)
    let significant = digits.reversed().drop { $0 == "0" }.reversed()
    let exponent = digits.count - 1
    var sci = n < 0 ? "-" : ""
    sci.append(significant.first!)
    if significant.count > 1 { sci += "." + String(significant.dropFirst()) }
    sci += "e+" + (exponent < 10 ? "0" : "") + String(exponent)
    return fixed.count <= sci.count ? fixed : sci
}
