/// The contrasts of lmerTest's `anova(type = 3)` for a design in treatment coding: the
/// hypothesis of each fixed-effect term, as SAS's type III.
///
/// A term's effect is tested averaged with equal weights over the levels of the factors that
/// the terms containing it add, and at 0 of the numeric covariates they add. In treatment
/// coding that makes column c of term T the row
///
///     e_c + Σ over terms T' ⊃ T, columns c' of T' that agree with c on T's variables and
///           add only factors: Π over the added factors f of 1/K_f,
///
/// K_f the number of levels of f (so `service` in `service * dept` is β_service plus the mean
/// over the 14 departments of the interaction columns, 0 for the first; `standLRT` in
/// `standLRT * schavg` is β_standLRT alone). A term whose coding is not treatment contrasts
/// (a factor coded by all its levels, as in `a:b` without `a`) has no row here and no test.
enum TypeThreeContrasts {
    /// For each term of `terms`: its name and its contrast rows over the columns `kept` (design
    /// column indices, the fit's X), or nil when the term is not tested (coding not treatment,
    /// or the hypothesis uses a column the fit dropped as aliased).
    static func contrasts(_ design: Design, terms: TermList, kept: [Int]) -> [(term: String, rows: [[Double]]?)] {
        let position = Dictionary(uniqueKeysWithValues: kept.enumerated().map { ($1, $0) })
        let variableSets = terms.terms.map { Set($0.variables.map { v in design.variables.firstIndex(of: v)! }) }
        func treatmentCoded(_ j: Int) -> Bool {
            design.termColumns[j].allSatisfy { c in design.columns[c].indicators.allSatisfy { $0.level > 0 } }
        }
        func levelCount(_ v: Int) -> Int? {
            if case .categorical(let levels) = design.codings[v] { return levels.count }
            return nil
        }
        return terms.terms.indices.map { j in
            let name = terms.terms[j].name
            let containing = terms.terms.indices.filter { variableSets[$0].isStrictSuperset(of: variableSets[j]) }
            guard treatmentCoded(j), containing.allSatisfy(treatmentCoded) else { return (name, nil) }
            var rows: [[Double]] = []
            for c in design.termColumns[j] {
                var row = [Double](repeating: 0, count: design.columns.count)
                row[c] = 1
                let levels = Dictionary(uniqueKeysWithValues: design.columns[c].indicators.map { ($0.variable, $0.level) })
                for t in containing {
                    let added = variableSets[t].subtracting(variableSets[j])
                    guard added.allSatisfy({ levelCount($0) != nil }) else { continue }
                    let weight = added.reduce(1.0) { $0 / Double(levelCount($1)!) }
                    for c2 in design.termColumns[t] where design.columns[c2].indicators.allSatisfy({ indicator in
                        levels[indicator.variable].map { $0 == indicator.level } ?? true
                    }) {
                        row[c2] += weight
                    }
                }
                rows.append(row)
            }
            // Onto the kept columns; a weight on a dropped column leaves the term untested.
            var mapped: [[Double]] = []
            for row in rows {
                var out = [Double](repeating: 0, count: kept.count)
                for (c, w) in row.enumerated() where w != 0 {
                    guard let k = position[c] else { return (name, nil) }
                    out[k] = w
                }
                mapped.append(out)
            }
            return (name, mapped)
        }
    }
}
