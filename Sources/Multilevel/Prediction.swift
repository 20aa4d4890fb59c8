import Foundation

/// A fitted model as `mlm fit --json` saved it: the formula, β̂ by name, the coding of each
/// factor, and the conditional modes of each random term by level — what prediction needs.
public struct SavedModel {
    public let formula: Formula
    let beta: [String: Double]
    let factorLevels: [String: [String]]
    let terms: [(group: String, effects: [String], modes: [String: [Double]])]

    /// The model of a fit in memory.
    init(fit: FitResult) throws {
        formula = try Formula.parse(fit.formula)
        beta = Dictionary(uniqueKeysWithValues: zip(fit.fixedNames, fit.beta))
        factorLevels = Dictionary(uniqueKeysWithValues: fit.factorLevels.map { ($0.variable, $0.levels) })
        terms = fit.terms.enumerated().map { k, t in
            (t.group, t.effects, Dictionary(uniqueKeysWithValues: t.levels.enumerated().map { l, name in
                (name, Array(fit.conditionalModes[k][(l * t.dimension)..<((l + 1) * t.dimension)]))
            }))
        }
    }

    /// Reads the JSON that `mlm fit --json` wrote.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw InputError("cannot read the model file '\(path)'") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw InputError("the model file '\(path)' is not JSON")
        }
        guard let text = json["formula"] as? String, let beta = json["beta"] as? [String: Any],
              let levels = json["factor_levels"] as? [String: [String]], let ranef = json["ranef"] as? [[String: Any]] else {
            throw InputError("the model file '\(path)' lacks formula, beta, factor_levels or ranef: write it with `mlm fit --json`")
        }
        formula = try Formula.parse(text)
        self.beta = beta.compactMapValues { $0 as? Double }
        factorLevels = levels
        terms = try ranef.map { t in
            guard let group = t["group"] as? String, let effects = t["effects"] as? [String],
                  let names = t["levels"] as? [String], let modes = t["modes"] as? [[Double]], names.count == modes.count else {
                throw InputError("the model file '\(path)' has a malformed ranef entry")
            }
            return (group, effects, Dictionary(uniqueKeysWithValues: zip(names, modes)))
        }
    }
}

/// Predictions for new data, as lme4's `predict(m, newdata)`: Xβ̂ + Zb̂ with the fitted
/// conditional modes of the levels the fit saw (a new level contributes 0, lme4's
/// `allow.new.levels = TRUE`), or Xβ̂ alone (`re.form = NA`). Factors are coded with the fit's
/// levels. The rows are read in chunks, so memory does not grow with their number.
public enum Prediction {
    /// Calls `emit` with each chunk's predictions, in row order, and the responses of those
    /// rows (0 when the data have no response column); nil where a predictor is missing.
    public static func predict(_ model: SavedModel, data: TableSource, population: Bool, chunkRows: Int = 65_536,
                               emit: (_ predictions: [Double?], _ responses: [Double?]) throws -> Void) throws {
        let formula = model.formula
        let groupingLevels: [[String]] = try formula.random.map { rt in
            try savedTerm(model, rt).modes.keys.sorted()
        }
        let frame = try ModelFrame.binding(formula, source: data, chunkRows: chunkRows, factorLevels: model.factorLevels,
                                           groupingLevels: groupingLevels)
        let beta = frame.fixedDesign.columns.map { model.beta[$0.name] ?? 0 }   // an aliased column has no β: 0
        // Per term, the mode of each of the frame's level codes.
        let modes: [[[Double]]] = try frame.randomTerms.map { bt in
            let t = try savedTerm(model, bt.term)
            let p = bt.effects.columns.count
            return bt.levels.names.map { t.modes[$0] ?? Array(repeating: 0, count: p) }
        }
        let p = beta.count
        var start = 0
        while start < data.rowCount {
            let rows = start..<min(start + chunkRows, data.rowCount)
            let raw = try frame.read(rows)
            let chunk = try frame.modelChunk(raw)
            var out = [Double?](repeating: nil, count: rows.count), responses = out
            var r = 0
            for i in 0..<rows.count where raw.complete[i] {
                var eta = 0.0
                for j in 0..<p { eta += chunk.x[r * p + j] * beta[j] }
                if !population {
                    for (k, t) in chunk.terms.enumerated() {
                        let pk = frame.randomTerms[k].effects.columns.count
                        for m in 0..<t.memberships {
                            let code = Int(t.levels[r * t.memberships + m])
                            guard code >= 0 else { continue }
                            var dot = 0.0
                            for e in 0..<pk { dot += t.z[r * pk + e] * modes[k][code][e] }
                            eta += t.weights[r * t.memberships + m] * dot
                        }
                    }
                }
                out[i] = eta
                responses[i] = chunk.y[r]
                r += 1
            }
            try emit(out, responses)
            start = rows.upperBound
        }
    }

    /// The saved term of a formula's random term (same group, same effects).
    private static func savedTerm(_ model: SavedModel, _ rt: RandomTerm) throws
        -> (group: String, effects: [String], modes: [String: [Double]]) {
        let effects = Design(rt.effects, coding: { v in
            model.factorLevels[v.name].map { .categorical(levels: $0) } ?? .numeric
        }).columns.map(\.name)
        guard let t = model.terms.first(where: { $0.group == rt.grouping.name && $0.effects == effects }) else {
            throw InputError("the model file has no random term (\(effects.joined(separator: " + ")) | \(rt.grouping.name)) of its formula")
        }
        return t
    }
}
