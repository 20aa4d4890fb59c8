import Foundation

/// The levels of one categorical variable or grouping factor, collected from the data.
///
/// String values sort in byte order (R's C-locale sort); numeric values sort numerically and
/// are named as R's `as.character` names them (`1`, `2.5`, `1e+05`).
struct LevelSet {
    private var strings: Set<String> = []
    private var numbers: Set<Double> = []

    mutating func insert(_ s: String) { strings.insert(s) }
    mutating func insert(_ x: Double) { numbers.insert(x) }

    var isEmpty: Bool { strings.isEmpty && numbers.isEmpty }

    /// The sorted level names.
    func sortedNames() -> [String] {
        numbers.sorted().map(rLevelName) + strings.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

/// Maps a variable's raw values to 0-based level codes.
struct LevelIndex {
    let names: [String]
    private let index: [String: Int32]

    init(names: [String]) {
        self.names = names
        var d: [String: Int32] = [:]
        for (i, n) in names.enumerated() { d[n] = Int32(i) }
        index = d
    }

    /// The code of a level name, or −1 for a value not among the levels.
    func code(_ name: String) -> Int32 { index[name] ?? -1 }
}

/// R's `as.character` of a double: up to 15 significant digits, fixed or scientific
/// notation, whichever is shorter (R's default `scipen = 0`).
func rLevelName(_ x: Double) -> String {
    if x.isNaN { return "NaN" }
    if x.isInfinite { return x > 0 ? "Inf" : "-Inf" }
    if x == 0 { return "0" }
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
