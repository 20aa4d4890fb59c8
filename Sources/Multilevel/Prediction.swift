import Foundation

/// A fitted model as `mlm fit --json` saved it: the formula, β̂ by name, the coding of each
/// factor, and the conditional modes of each random term by level — what prediction needs.
public struct SavedModel {
    public let formula: Formula
    /// A GLMM's family and link (nil: a Gaussian model).
    public let distribution: ResponseDistribution?
    let beta: [ExactString: Double]
    let factorLevels: [String: [String]]
    let terms: [SavedTerm]

    struct SavedTerm {
        let group: String
        let effects: [String]
        /// The levels in the fit's order, and each level's conditional modes.
        let levels: [String]
        let modes: [ExactString: [Double]]
    }

    /// The model of a fit in memory.
    init(fit: FitResult) throws {
        let parsed = try Formula.parse(fit.formula)
        // The residual variance's column is read too (the report's plots by variance group).
        formula = fit.residualVariance.map { parsed.withResidualVariance($0.model) } ?? parsed
        distribution = nil
        beta = Dictionary(uniqueKeysWithValues: zip(fit.fixedNames.map(ExactString.init), fit.beta))
        factorLevels = Dictionary(uniqueKeysWithValues: fit.factorLevels.map { ($0.variable, $0.levels) })
        terms = fit.terms.enumerated().map { k, t in
            SavedTerm(group: t.group, effects: t.effects, levels: t.levels,
                      modes: Dictionary(uniqueKeysWithValues: t.levels.enumerated().map { l, name in
                          (ExactString(name), Array(fit.conditionalModes[k][(l * t.dimension)..<((l + 1) * t.dimension)]))
                      }))
        }
    }

    /// Reads the JSON that `mlm fit --json` wrote.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw InputError("cannot read the model file '\(path)'") }
        guard let json = try? JSONValue.parse(data) as? [String: Any] else {
            throw InputError("the model file '\(path)' is not JSON")
        }
        guard let text = json["formula"] as? String, let beta = json["beta"] as? [String: Any],
              let levels = json["factor_levels"] as? [String: [String]], let ranef = json["ranef"] as? [[String: Any]] else {
            throw InputError("the model file '\(path)' lacks formula, beta, factor_levels or ranef: write it with `mlm fit --json`")
        }
        if let family = json["family"] as? String {
            guard let f = ResponseFamily(rawValue: family), let l = (json["link"] as? String).flatMap(LinkFunction.init(rawValue:)) else {
                throw InputError("the model file '\(path)' has an unknown family or link")
            }
            distribution = try ResponseDistribution(family: f, link: l)
            formula = f == .binomial ? try Formula.parse(text).allowingTwoLevelResponse() : try Formula.parse(text)
        } else {
            distribution = nil
            formula = try Formula.parse(text)
        }
        self.beta = Dictionary(beta.compactMap { name, value in (value as? Double).map { (ExactString(name), $0) } }) { a, _ in a }
        factorLevels = levels
        terms = try ranef.map { t in
            guard let group = t["group"] as? String, let effects = t["effects"] as? [String],
                  let names = t["levels"] as? [String], let modes = t["modes"] as? [[Double]], names.count == modes.count else {
                throw InputError("the model file '\(path)' has a malformed ranef entry")
            }
            return SavedTerm(group: group, effects: effects, levels: names,
                             modes: Dictionary(zip(names.map(ExactString.init), modes)) { a, _ in a })
        }
    }
}

/// Predictions for new data, as lme4's `predict(m, newdata)`: Xβ̂ + Zb̂ with the fitted
/// conditional modes of the levels the fit saw (a new level contributes 0, lme4's
/// `allow.new.levels = TRUE`), or Xβ̂ alone (`re.form = NA`); a GLMM's offset is added, and
/// its predictions are on the link scale (lme4's `type = "link"`) or the response scale, μ =
/// g⁻¹(η) (`type = "response"`: `response`). Factors are coded with the fit's
/// levels. The rows are read in chunks, so memory does not grow with their number.
public enum Prediction {
    /// Calls `emit` with each chunk's predictions, in row order, and the responses of those
    /// rows (0 when the data have no response column); nil where a predictor is missing.
    public static func predict(_ model: SavedModel, data: TableSource, population: Bool, response scale: Bool = false,
                               chunkRows: Int = 65_536,
                               emit: (_ predictions: [Double?], _ responses: [Double?]) throws -> Void) throws {
        try forEachChunk(model, data: data, chunkRows: chunkRows) { chunk in
            var out = [Double?](repeating: nil, count: chunk.complete.count), responses = out
            var r = 0
            for i in chunk.complete.indices where chunk.complete[i] {
                let eta = population ? chunk.population[r] : chunk.conditional[r]
                out[i] = scale ? model.distribution.map { $0.mean(eta) } ?? eta : eta
                responses[i] = chunk.response[r]
                r += 1
            }
            try emit(out, responses)
        }
    }

    /// One chunk of rows as prediction sees them; the arrays other than `complete` hold the
    /// complete rows only, in order.
    struct PredictedChunk {
        var complete: [Bool]
        /// Xβ̂, and Xβ̂ + Zb̂.
        var population: [Double]
        var conditional: [Double]
        var response: [Double]
        /// The residual variance's group name or covariate of each complete row (`--residual-variance`), else empty.
        var varianceGroup: [String] = []
        var varianceCovariate: [Double] = []
        /// Per random term of the formula: the index of its term in the saved model, and each
        /// complete row's `memberships` levels (indices into the saved term's levels, −1 for a
        /// level the fit did not see) and weights.
        var terms: [(saved: Int, memberships: Int, levels: [Int], weights: [Double])]
    }

    /// Reads `data` in chunks and evaluates the model on each.
    static func forEachChunk(_ model: SavedModel, data: TableSource, chunkRows: Int,
                             body: (PredictedChunk) throws -> Void) throws {
        let formula = model.formula
        let saved = try formula.random.map { try savedTerm(model, $0) }
        let frame = try ModelFrame.binding(formula, source: data, chunkRows: chunkRows, factorLevels: model.factorLevels,
                                           groupingLevels: saved.map { model.terms[$0].levels })
        let beta = frame.fixedDesign.columns.map { model.beta[ExactString($0.name)] ?? 0 }   // an aliased column has no β: 0
        // Per term, each of the frame's level codes as the saved level's index and its modes.
        let index: [[Int]] = zip(frame.randomTerms, saved).map { bt, k in
            let position = Dictionary(uniqueKeysWithValues: model.terms[k].levels.enumerated().map { (ExactString($1), $0) })
            return bt.levels.names.map { position[ExactString($0)] ?? -1 }
        }
        let modes: [[[Double]]] = zip(frame.randomTerms, saved).map { bt, k in
            bt.levels.names.map { model.terms[k].modes[ExactString($0)] ?? Array(repeating: 0, count: bt.effects.columns.count) }
        }
        let p = beta.count
        var start = 0
        while start < data.rowCount {
            let rows = start..<min(start + chunkRows, data.rowCount)
            let raw = try frame.read(rows)
            let chunk = try frame.modelChunk(raw)
            var out = PredictedChunk(complete: raw.complete, population: [], conditional: [], response: chunk.y,
                                     terms: chunk.terms.indices.map { (saved[$0], chunk.terms[$0].memberships, [], []) })
            // The covariate is the model rows' own; a group's name is read here (the bound frame
            // codes no levels of g).
            out.varianceCovariate = chunk.varianceCovariate
            if case .groups(let g) = formula.residualVariance {
                let values = raw.categorical(g)
                out.varianceGroup = raw.complete.indices.filter { raw.complete[$0] }.map { values.value($0)?.name ?? "" }
            }
            for r in 0..<chunk.count {
                var eta = chunk.offset.isEmpty ? 0 : chunk.offset[r]
                for j in 0..<p { eta += chunk.x[r * p + j] * beta[j] }
                out.population.append(eta)
                for (k, t) in chunk.terms.enumerated() {
                    let pk = frame.randomTerms[k].effects.columns.count
                    for m in 0..<t.memberships {
                        let code = Int(t.levels[r * t.memberships + m]), w = t.weights[r * t.memberships + m]
                        out.terms[k].levels.append(code >= 0 ? index[k][code] : -1)
                        out.terms[k].weights.append(w)
                        guard code >= 0 else { continue }
                        var dot = 0.0
                        for e in 0..<pk { dot += t.z[r * pk + e] * modes[k][code][e] }
                        eta += w * dot
                    }
                }
                out.conditional.append(eta)
            }
            try body(out)
            start = rows.upperBound
        }
    }

    /// The index of a formula's random term among the saved ones (same group, same effects).
    private static func savedTerm(_ model: SavedModel, _ rt: RandomTerm) throws -> Int {
        let effects = Design(rt.effects, coding: { v in
            model.factorLevels[v.name].map { .categorical(levels: $0) } ?? .numeric
        }).columns.map(\.name)
        guard let t = model.terms.firstIndex(where: { $0.group == rt.grouping.name && $0.effects == effects }) else {
            throw InputError("the model file has no random term (\(effects.joined(separator: " + ")) | \(rt.grouping.name)) of its formula")
        }
        return t
    }
}
