import Foundation

/// A formula bound to a data source: which columns it reads, how each variable is coded, the
/// levels of every factor, which rows are complete — and the conversion of a chunk of rows into
/// model quantities (X, y, and each random term's memberships and covariates).
///
/// `ModelFrame.scan` reads the used columns once to learn the levels (lme4's model frame, without
/// keeping the rows); `crossProducts()` then streams the rows once more into `CrossProducts`.
/// Neither pass holds more than one chunk of rows.
public struct ModelFrame {
    public let formula: Formula
    public let source: TableSource
    public let chunkRows: Int
    /// The fixed-effects design (all columns, before any aliased ones are dropped).
    public let fixedDesign: Design
    /// One per random term, sorted as lme4 sorts them (decreasing number of levels, stable).
    let randomTerms: [BoundRandomTerm]
    /// Rows used (complete cases) and rows dropped for missing values.
    public let completeRows: Int
    public let droppedRows: Int

    struct BoundRandomTerm {
        let term: RandomTerm
        let effects: Design
        let levels: GroupingLevels
    }

    /// A grouping factor's levels: one column (or the columns of a multiple membership), or an interaction.
    enum GroupingLevels {
        case single(LevelIndex)
        case interaction(InteractionIndex)

        var names: [String] {
            switch self {
            case .single(let index): return index.names
            case .interaction(let index): return index.names
            }
        }
    }

    /// The random-effects terms in Z's column order.
    public var randomEffectsTerms: [RandomEffectsTerm] {
        var offset = 0
        return randomTerms.map { bt in
            let t = RandomEffectsTerm(group: bt.term.grouping.name, effects: bt.effects.columns.map(\.name),
                                      levels: bt.levels.names, offset: offset)
            offset += t.columns
            return t
        }
    }

    /// Reads the used columns once, on `threads` threads: checks types, finds complete rows and
    /// collects levels. Under MPI each rank reads its own slab of rows (`Communicator.slab`) and
    /// the ranks pool what they found, so every rank ends with the same frame.
    public static func scan(_ formula: Formula, source: TableSource, chunkRows: Int = 65_536,
                            threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                            communicator: Communicator = SingleProcess()) throws -> ModelFrame {
        try scan(formula, source: source, chunkRows: chunkRows, threads: threads, communicator: communicator,
                 segmentRows: CrossProductAccumulator.segmentRows)
    }

    static func scan(_ formula: Formula, source: TableSource, chunkRows: Int, threads: Int,
                     communicator: Communicator, segmentRows: Int) throws -> ModelFrame {
        precondition(chunkRows > 0)
        let formula = formula.usesScale ? try formula.resolvingScale(in: source, chunkRows: chunkRows) : formula
        if formula.random.isEmpty {
            throw InputError("no random-effects terms specified in the formula (a term such as (1 | g)): mlm fits mixed models")
        }
        let columns = formula.columns
        var types: [String: ColumnType] = [:]
        for c in columns { types[c] = try source.columnType(c) }
        let reader = ChunkReader(source: source, types: types, formula: formula)
        // A two-level response (a binomial GLMM's factor or logical column) is categorical.
        let categoricalResponse = formula.twoLevelResponse && formula.response.columns.count == 1
            && { if case .column(let c) = formula.response { return types[c] == .string } else { return false } }()
        if !categoricalResponse { try reader.checkNumeric(formula.response, role: "the response") }
        if let f = formula.failures { try reader.checkNumeric(f, role: "the failures of cbind()") }
        for o in formula.offsets { try reader.checkNumeric(o, role: "offset") }
        if let w = formula.weights { try reader.checkNumeric(.column(w), role: "the weights column") }

        // Variables coded as factors, and the groupings, collect levels from complete rows.
        let allVariables = formula.fixed.terms.flatMap(\.variables)
            + formula.random.flatMap { $0.effects.terms.flatMap(\.variables) }
        var categorical: [Variable] = categoricalResponse ? [formula.response] : []
        if case .groups(let g) = formula.residualVariance { categorical.append(.factor(g)) }
        for v in allVariables where !categorical.contains(v) {
            switch v {
            case .column(let c) where types[c] == .string: categorical.append(v)
            case .factor: categorical.append(v)
            case .column, .transform: try reader.checkNumeric(v, role: "variable")
            }
        }
        for rt in formula.random {
            if case .multipleMembership(let groups, let weights) = rt.grouping {
                for w in weights { try reader.checkNumeric(.column(w), role: "weight of \(rt.grouping.name)") }
                let kinds = Set(groups.map { types[$0]! })
                if kinds.count > 1 {
                    throw InputError("\(rt.grouping.name): the group columns mix string and numeric types (\(groups.joined(separator: ", ")))")
                }
            }
        }
        // The numeric variables, whose ranges are checked.
        var numericVariables: [Variable] = []
        var varianceCovariate: [Variable] = []
        switch formula.residualVariance {
        case .exponential(let x), .power(let x):
            try reader.checkNumeric(.column(x), role: "the covariate of the residual variance")
            varianceCovariate = [.column(x)]
        case .groups, nil: break
        }
        for v in [formula.response] + (formula.failures.map { [$0] } ?? []) + formula.offsets + allVariables + varianceCovariate
            where !categorical.contains(v) && !numericVariables.contains(v) {
            numericVariables.append(v)
        }
        // Segments of rows on every core; each thread collects into its own sets, then the union.
        let template = LevelTally(complete: 0, total: 0, numeric: numericVariables.count,
                               variableLevels: Array(repeating: LevelSet(), count: categorical.count),
                               groupingLevels: formula.random.map { rt in
                                   if case .factor(let cols) = rt.grouping { return Array(repeating: LevelSet(), count: cols.count) }
                                   return [LevelSet()]
                               },
                               interactionKeys: Array(repeating: [], count: formula.random.count))
        let tallies = LockedArray<LevelTally>()
        let slab = communicator.slab(of: source.rowCount, unit: CrossProductAccumulator.groupRows(segmentRows: segmentRows))
        try communicator.agree {
            try forEachSegment(rows: slab, segmentRows: segmentRows,
                               chunkRows: chunkRows, threads: threads, state: template,
                               body: { tally, _, chunks in
                                   for rows in chunks {
                                       tally.add(try reader.read(rows), categorical: categorical, random: formula.random,
                                                 numeric: numericVariables)
                                   }
                               },
                               finished: { tallies.append($0) })
        }
        var all = template
        for t in tallies.values { all.formUnion(t) }
        if communicator.size > 1 {
            let mine = all.encoded()
            all = template
            for bytes in communicator.allGather(mine) { all.formUnion(LevelTally(decoding: bytes)) }
        }
        let (complete, total) = (all.complete, all.total)
        let (variableLevels, groupingLevels, interactionKeys) = (all.variableLevels, all.groupingLevels, all.interactionKeys)
        if complete == 0 {
            throw InputError(total == 0 ? "\(source.name) has no rows"
                : "no complete rows: all \(total) rows of \(source.name) have a missing value in the columns used (\(columns.joined(separator: ", ")))")
        }

        for (k, v) in numericVariables.enumerated() where !formula.offsets.contains(v) && v != formula.failures {
            try checkRange(v, isResponse: v == formula.response, minimum: all.minimum[k], maximum: all.maximum[k])
        }

        var factorLevels: [Variable: LevelIndex] = [:]
        for (vi, v) in categorical.enumerated() { factorLevels[v] = LevelIndex(variableLevels[vi]) }
        if categoricalResponse, let levels = factorLevels[formula.response]?.names, levels.count != 2 {
            let shown = levels.prefix(5).map { "'\($0)'" }.joined(separator: ", ") + (levels.count > 5 ? ", …" : "")
            throw InputError("the response '\(formula.response.name)' has \(levels.count) value\(levels.count == 1 ? "" : "s") (\(shown)) in the complete rows; a binomial response needs two (the first, in byte order, is failure)")
        }
        let coding: (Variable) -> VariableCoding = { factorLevels[$0].map { .categorical(levels: $0.names) } ?? .numeric }
        let fixedDesign = Design(formula.fixed, coding: coding)

        var bound: [BoundRandomTerm] = []
        for (k, rt) in formula.random.enumerated() {
            let levels: GroupingLevels
            if case .factor(let cols) = rt.grouping, cols.count > 1 {
                levels = .interaction(InteractionIndex(components: groupingLevels[k].map(LevelIndex.init),
                                                       observed: interactionKeys[k]))
            } else {
                levels = .single(LevelIndex(groupingLevels[k][0]))
            }
            let names = levels.names
            let effects = Design(rt.effects, coding: coding)
            if effects.columns.isEmpty {
                throw InputError("random term (\(rt.effects.terms.map(\.name).joined(separator: " + ")) | \(rt.grouping.name)) has no effects")
            }
            if names.count < 2 {
                throw InputError("grouping factor '\(rt.grouping.name)' has \(names.count) level\(names.count == 1 ? "" : "s") in the complete rows; a random effect needs at least 2")
            }
            if names.count >= complete {
                throw InputError("grouping factor '\(rt.grouping.name)' has \(names.count) levels for \(complete) observations; it must have fewer levels than observations")
            }
            if names.count * effects.columns.count >= complete {
                try explainStringColumn(rt, types: types, factorLevels: factorLevels, source: source, chunkRows: chunkRows,
                                        effects: names.count * effects.columns.count, observations: complete)
                throw InputError("term (… | \(rt.grouping.name)) has \(names.count * effects.columns.count) random effects for \(complete) observations; the variance components would be unidentifiable")
            }
            bound.append(BoundRandomTerm(term: rt, effects: effects, levels: levels))
        }
        // Z'Z's row indices are 32-bit (`CrossProducts.zzRowIndices`).
        let q = bound.reduce(0) { $0 + $1.levels.names.count * $1.effects.columns.count }
        if q > Int(Int32.max) {
            throw InputError("the random-effects terms have \(q) columns in all; at most \(Int32.max) are supported")
        }
        // lme4's order: by decreasing number of levels, ties in formula order.
        let order = bound.indices.sorted { a, b in
            bound[a].levels.names.count != bound[b].levels.names.count
                ? bound[a].levels.names.count > bound[b].levels.names.count : a < b
        }
        return ModelFrame(formula: formula, source: source, chunkRows: chunkRows, fixedDesign: fixedDesign,
                          randomTerms: order.map { bound[$0] }, completeRows: complete,
                          droppedRows: total - complete, types: types, factorLevels: factorLevels,
                          communicator: communicator, segmentRows: segmentRows)
    }

    /// The largest relative spread that is refused: a variable whose range is below this part of
    /// its magnitude (x = t + 1e9 with t in 0…9) loses its variation in the cross-products
    /// (x'x − n x̄² cancels to rounding), and would be dropped as aliased or give a wrong fit.
    static let minimumRelativeRange = 1e-5

    /// A constant response, or a variable whose variation is lost to its offset, is refused.
    private static func checkRange(_ v: Variable, isResponse: Bool, minimum: Double, maximum: Double) throws {
        guard minimum <= maximum else { return }
        let what = isResponse ? "the response '\(v.name)'" : "'\(v.name)'"
        if isResponse && minimum == maximum {
            throw InputError("\(what) is constant (\(rNumber(minimum)) in every complete row): there is nothing to model")
        }
        let magnitude = max(abs(minimum), abs(maximum)), range = maximum - minimum
        if range > 0 && range < minimumRelativeRange * magnitude {
            let centre = rNumber(Double(String(format: "%.3g", (minimum + maximum) / 2))!)
            let fix: String
            if case .column = v { fix = ", e.g. I(\(v.name) - \(centre))" } else { fix = " (subtract about \(centre))" }
            throw InputError("\(what) varies only from \(rNumber(minimum)) to \(rNumber(maximum)), a range too small for its magnitude to be resolved in double precision: centre it\(fix)")
        }
    }

    /// When a term has too many random effects because a column that should be numeric was read as
    /// strings (a CSV field `abc` among numbers), says so, naming the column and the first such row.
    private static func explainStringColumn(_ rt: RandomTerm, types: [String: ColumnType], factorLevels: [Variable: LevelIndex],
                                            source: TableSource, chunkRows: Int, effects: Int, observations: Int) throws {
        for v in rt.effects.terms.flatMap(\.variables) {
            guard case .column(let c) = v, types[c] == .string, let levels = factorLevels[v]?.names else { continue }
            let numbers = levels.filter { Double($0) != nil }.count
            guard numbers > 0, numbers >= levels.count / 2, numbers < levels.count else { continue }
            var start = 0
            while start < source.rowCount {
                let rows = start..<min(start + chunkRows, source.rowCount)
                let values = try source.readStrings(c, rows: rows)
                if let i = values.firstIndex(where: { $0 != nil && Double($0!) == nil }) {
                    throw InputError("\(source.name) \(source.rowDescription(rows.lowerBound + i)): column '\(c)' holds '\(values[i]!)', not a number, so '\(c)' is read as strings and (… | \(rt.grouping.name)) has a factor of \(levels.count) levels (\(effects) random effects for \(observations) observations)")
                }
                start = rows.upperBound
            }
        }
    }

    /// New data bound with a fitted model's coding: each factor's levels and each grouping
    /// factor's levels are the fit's (`factorLevels` by variable name, `groupingLevels` per
    /// random term of the formula), whatever the new data hold; a level the fit did not see
    /// gets code −1 (no random effect). When the data lack the response, it is read as 0.
    static func binding(_ formula: Formula, source: TableSource, chunkRows: Int, factorLevels saved: [String: [String]],
                        groupingLevels: [[String]]) throws -> ModelFrame {
        if formula.usesScale {
            throw InputError("scale() in the model's formula is not supported for new data (its mean and SD are the fit's data's): scale the column in the file instead")
        }
        // A GLMM's response (cbind, a factor) is not read: predictions do not need it.
        let responseColumns = Set(formula.response.columns + (formula.failures?.columns ?? []))
        let hasResponse = !formula.twoLevelResponse && formula.failures == nil
            && responseColumns.allSatisfy { source.columnNames.contains($0) }
        var formula = formula
        if !hasResponse {
            let used = Set(formula.fixed.terms.flatMap(\.variables).flatMap(\.columns) + formula.offsets.flatMap(\.columns)
                           + formula.random.flatMap { $0.effects.terms.flatMap(\.variables).flatMap(\.columns) + $0.grouping.columns })
            formula = Formula(text: formula.text, response: .transform("0", .number(0)), fixed: formula.fixed,
                              random: formula.random, columns: formula.columns.filter { !responseColumns.contains($0) || used.contains($0) },
                              offsets: formula.offsets)
        }
        var types: [String: ColumnType] = [:]
        for c in formula.columns { types[c] = try source.columnType(c) }
        func values(_ names: [String], column: String) throws -> [LevelValue] {
            try names.map { name in
                if types[column] == .string { return .string(name) }
                guard let x = Double(name) else {
                    throw InputError("column '\(column)' holds numbers, but the model's level '\(name)' is not a number")
                }
                return .number(x)
            }
        }
        var factorLevels: [Variable: LevelIndex] = [:]
        let allVariables = formula.fixed.terms.flatMap(\.variables) + formula.random.flatMap { $0.effects.terms.flatMap(\.variables) }
        for v in allVariables where factorLevels[v] == nil {
            if let names = saved[v.name] {
                factorLevels[v] = LevelIndex(values: try values(names, column: v.factorColumn))
            } else {
                for c in v.columns where types[c] == .string {
                    throw InputError("'\(v.name)' was numeric in the fitted model, but column '\(c)' holds strings")
                }
            }
        }
        let coding: (Variable) -> VariableCoding = { factorLevels[$0].map { .categorical(levels: $0.names) } ?? .numeric }
        let bound = try zip(formula.random, groupingLevels).map { rt, names -> BoundRandomTerm in
            let levels: GroupingLevels
            switch rt.grouping {
            case .factor(let cols) where cols.count > 1:
                // Components from the fit's combined names ("a:b"), and the combinations it saw.
                let parts = names.map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
                guard parts.allSatisfy({ $0.count == cols.count }) else {
                    throw InputError("the model's levels of '\(rt.grouping.name)' are not \(cols.count)-part names a:b")
                }
                let components = try cols.indices.map { i in
                    LevelIndex(values: try values(Array(Set(parts.map { $0[i] })).sorted(), column: cols[i]))
                }
                let observed = Set(try parts.map { p in try cols.indices.map { try values([p[$0]], column: cols[$0])[0] } })
                levels = .interaction(InteractionIndex(components: components, observed: observed))
            case .factor(let cols):
                levels = .single(LevelIndex(values: try values(names, column: cols[0])))
            case .multipleMembership(let groups, _):
                levels = .single(LevelIndex(values: try values(names, column: groups[0])))
            }
            return BoundRandomTerm(term: rt, effects: Design(rt.effects, coding: coding), levels: levels)
        }
        return ModelFrame(formula: formula, source: source, chunkRows: chunkRows, fixedDesign: Design(formula.fixed, coding: coding),
                          randomTerms: bound, completeRows: 0, droppedRows: 0, types: types, factorLevels: factorLevels,
                          communicator: SingleProcess(), segmentRows: CrossProductAccumulator.segmentRows)
    }

    /// A chunk of rows as the frame reads them (complete rows marked).
    func read(_ rows: Range<Int>) throws -> RawChunk {
        try ChunkReader(source: source, types: types, formula: formula).read(rows)
    }

    /// The names of the levels of each categorical variable (for saving the model's coding).
    var factorLevelNames: [(variable: String, levels: [String])] {
        factorLevels.map { ($0.key.name, $0.value.names) }.sorted { $0.variable < $1.variable }
    }

    /// The job's ranks, and the rows per segment (tests make segments small).
    let communicator: Communicator
    var segmentRows: Int
    /// The rows this rank reads.
    var slab: Range<Int> {
        communicator.slab(of: source.rowCount, unit: CrossProductAccumulator.groupRows(segmentRows: segmentRows))
    }
    let types: [String: ColumnType]
    /// The levels of every variable coded as a factor.
    private let factorLevels: [Variable: LevelIndex]

    private init(formula: Formula, source: TableSource, chunkRows: Int, fixedDesign: Design,
                 randomTerms: [BoundRandomTerm], completeRows: Int, droppedRows: Int,
                 types: [String: ColumnType], factorLevels: [Variable: LevelIndex],
                 communicator: Communicator, segmentRows: Int) {
        self.communicator = communicator
        self.segmentRows = segmentRows
        self.formula = formula
        self.source = source
        self.chunkRows = chunkRows
        self.fixedDesign = fixedDesign
        self.randomTerms = randomTerms
        self.completeRows = completeRows
        self.droppedRows = droppedRows
        self.types = types
        self.factorLevels = factorLevels
    }

    /// Streams the rows once into [Z X y]'[Z X y], on `threads` threads and on every rank.
    ///
    /// Threads take segments of rows and read each in chunks of at most `chunkRows` rows; ranks
    /// read their slabs and rank 0 adds the others' groups after its own. The result is bitwise
    /// the same for any number of threads, any chunk size and any number of ranks (see
    /// `CrossProductAccumulator`), and every rank returns it.
    public func crossProducts(threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws -> CrossProducts {
        try accumulate(slab, threads: threads, keepsGroups: !communicator.isRoot).reduced(over: communicator)
    }

    /// The cross-products with segments of `segmentRows` rows (tests exercise merging with small ones).
    func crossProducts(threads: Int, segmentRows: Int) throws -> CrossProducts {
        var frame = self
        frame.segmentRows = segmentRows
        return try frame.crossProducts(threads: threads)
    }

    /// The cross-products of `rows` alone (every group closed), agreed on by every rank; each
    /// chunk's model rows pass through `transform` first (a residual-variance weighting).
    func accumulate(_ rows: Range<Int>, threads: Int, keepsGroups: Bool,
                    transform: ((inout ModelChunk) throws -> Void)? = nil) throws -> CrossProductAccumulator {
        try accumulate(rows, threads: threads, keepsGroups: keepsGroups, count: 1) { chunk, _ in
            if let transform { try transform(&chunk) }
        }[0]
    }

    /// `count` cross-products of the same rows in one pass: `share(chunk, k)` makes the k-th's
    /// model rows from each chunk's.
    private func accumulate(_ rows: Range<Int>, threads: Int, keepsGroups: Bool, count: Int,
                            share: @escaping (inout ModelChunk, Int) throws -> Void) throws -> [CrossProductAccumulator] {
        let accumulators = (0..<count).map { _ in
            CrossProductAccumulator(terms: randomEffectsTerms, fixedNames: fixedDesign.columns.map(\.name), keepsGroups: keepsGroups)
        }
        let reader = ChunkReader(source: source, types: types, formula: formula)
        try communicator.agree {
            try forEachSegment(rows: rows, segmentRows: segmentRows, chunkRows: chunkRows, threads: threads, state: (),
                               body: { _, segment, chunks in
                                   var builders = accumulators.map { SegmentBuilder(layout: $0.layout) }
                                   for rows in chunks {
                                       let chunk = try modelChunk(reader.read(rows))
                                       for k in 0..<count {
                                           var shared = chunk
                                           try share(&shared, k)
                                           builders[k].add(shared)
                                       }
                                   }
                                   for k in 0..<count { accumulators[k].add(builders[k].finish(), index: segment) }
                               },
                               failed: { segment in accumulators.forEach { $0.skip(index: segment) } })
        }
        accumulators.forEach { $0.finishGroups() }
        return accumulators
    }

    /// Each residual-variance group's cross-products (`--residual-variance "~ 1 | g"`), all on
    /// the pattern of every row's, in one pass over the rows.
    func groupCrossProducts(threads: Int) throws -> [CrossProducts] {
        guard case .groups(let g) = formula.residualVariance, let levels = factorLevels[.factor(g)] else {
            preconditionFailure("groupCrossProducts needs a residual variance by group")
        }
        return try accumulate(slab, threads: threads, keepsGroups: !communicator.isRoot, count: levels.names.count) { chunk, k in
            chunk = chunk.group(Int32(k))
        }.map { $0.reduced(over: communicator) }
    }

    /// The cross-products with the rows weighted by the residual-variance function's w = s⁻² at
    /// parameter t (`--residual-variance "~ x"`): a pass over the rows.
    func crossProducts(threads: Int, residualVarianceParameter t: Double) throws -> CrossProducts {
        guard let model = formula.residualVariance else { preconditionFailure("no residual-variance function") }
        return try accumulate(slab, threads: threads, keepsGroups: !communicator.isRoot) { chunk in
            let w = try chunk.varianceCovariate.map { x in
                guard let w = model.weight(x, parameter: t) else {
                    throw InputError("\(model.nlmeName)(\(model.formulaText)): at t = \(rNumber(t)) a row's weight s⁻² is not finite "
                        + "(\(model.column) = \(rNumber(x)))")
                }
                return w
            }
            chunk.weigh(w)
        }.reduced(over: communicator)
    }

    /// The levels of the residual variance's groups, in byte order (the first is the reference).
    var residualVarianceLevels: [String]? {
        guard case .groups(let g) = formula.residualVariance else { return nil }
        return factorLevels[.factor(g)]?.names
    }

    /// The model quantities of a chunk's complete rows.
    func modelChunk(_ chunk: RawChunk) throws -> ModelChunk {
        let keep = chunk.complete.indices.filter { chunk.complete[$0] }
        let n = keep.count
        let y: [Double]
        if let index = factorLevels[formula.response] {
            y = index.codes(chunk.categorical(formula.response.factorColumn), rows: keep).map(Double.init)
        } else {
            y = chunk.numeric(formula.response, rows: keep)
        }
        var x = [Double](repeating: 0, count: n * fixedDesign.columns.count)
        try evaluate(fixedDesign, chunk, keep, into: &x)
        var terms: [ModelChunk.TermRows] = []
        terms.reserveCapacity(randomTerms.count)
        for bt in randomTerms {
            var z = [Double](repeating: 0, count: n * bt.effects.columns.count)
            try evaluate(bt.effects, chunk, keep, into: &z)
            switch (bt.term.grouping, bt.levels) {
            case (.factor(let cols), .single(let index)):
                let levels = index.codes(chunk.categorical(cols[0]), rows: keep)
                terms.append(.init(memberships: 1, levels: levels, weights: Array(repeating: 1, count: n), z: z))
            case (.factor(let cols), .interaction(let index)):
                let components = cols.indices.map { index.components[$0].codes(chunk.categorical(cols[$0]), rows: keep) }
                let levels = keep.indices.map { r in index.code(components.map { $0[r] }) }
                terms.append(.init(memberships: 1, levels: levels, weights: Array(repeating: 1, count: n), z: z))
            case (.multipleMembership(let groups, let weights), .single(let index)):
                let m = groups.count
                var levels = [Int32](repeating: -1, count: n * m)
                var w = [Double](repeating: 0, count: n * m)
                let members = groups.indices.map { chunk.membership(group: groups[$0], weight: weights.isEmpty ? nil : weights[$0]) }
                let values = groups.map { chunk.categorical($0) }
                let weightValues = weights.map { chunk.numbers[$0]! }
                for (r, i) in keep.enumerated() {
                    var present = 0
                    for g in 0..<m where members[g](i) {
                        levels[r * m + g] = index.code(values[g].value(i)!)
                        w[r * m + g] = weightValues.isEmpty ? 1 : weightValues[g][i]
                        present += 1
                    }
                    if weights.isEmpty && present > 0 {
                        for g in 0..<m { w[r * m + g] /= Double(present) }
                    }
                }
                terms.append(.init(memberships: m, levels: levels, weights: w, z: z))
            case (.multipleMembership, .interaction):
                preconditionFailure("a multiple membership has one level set")
            }
        }
        var result = ModelChunk(count: n, x: x, y: y, terms: terms)
        if let f = formula.failures { result.failures = chunk.numeric(f, rows: keep) }
        for o in formula.offsets {
            let values = chunk.numeric(o, rows: keep)
            result.offset = result.offset.isEmpty ? values : zip(result.offset, values).map { $0 + $1 }
        }
        if let w = formula.weights { result.weigh(chunk.numeric(.column(w), rows: keep)) }
        switch formula.residualVariance {
        case .groups(let g):
            // A frame bound for prediction has no levels of g: prediction reads its names itself.
            if let index = factorLevels[.factor(g)] { result.varianceGroups = index.codes(chunk.categorical(g), rows: keep) }
        case .exponential(let x), .power(let x):
            result.varianceCovariate = chunk.numeric(.column(x), rows: keep)
            // varPower: |x|^t is 0 or infinite at x = 0 for every t but 0, so the model is not defined there.
            if case .power = formula.residualVariance, let r = result.varianceCovariate.firstIndex(of: 0) {
                throw InputError("\(source.name) \(source.rowDescription(chunk.start + keep[r])): '\(x)' is 0, and varPower(~\(rName(x))) "
                    + "needs \(rName(x)) ≠ 0 (the residual SD is σ·|\(rName(x))|^t)")
            }
        case nil: break
        }
        return result
    }

    private func evaluate(_ design: Design, _ chunk: RawChunk, _ keep: [Int], into out: inout [Double]) throws {
        var numeric: [[Double]] = []
        var codes: [[Int32]] = []
        for v in design.variables {
            if let index = factorLevels[v] {
                numeric.append([])
                let values = chunk.categorical(v.factorColumn)
                let c = index.codes(values, rows: keep)
                if let r = c.firstIndex(of: -1) {
                    // Only new data can hold a level the fit did not see (lme4: "factor x has new level").
                    let value = values.value(keep[r])!.name
                    let shown = index.names.prefix(10).map { "'\($0)'" }.joined(separator: ", ")
                        + (index.names.count > 10 ? ", …" : "")
                    throw InputError("\(source.name) \(source.rowDescription(chunk.start + keep[r])): \(v.name) has the level '\(value)', which the fitted model did not see (its levels: \(shown))")
                }
                codes.append(c)
            } else {
                numeric.append(chunk.numeric(v, rows: keep))
                codes.append([])
            }
        }
        design.evaluate(numeric: numeric, codes: codes, count: keep.count, into: &out)
    }
}

extension Variable {
    /// The data column a categorical variable takes its levels from.
    var factorColumn: String {
        switch self {
        case .column(let c), .factor(let c): return c
        case .transform(let name, _): return name
        }
    }
}

/// One categorical column of a chunk.
enum CategoricalValues {
    case strings([String?])
    case numbers([Double])

    func value(_ row: Int) -> LevelValue? {
        switch self {
        case .strings(let s): return s[row].map(LevelValue.string)
        case .numbers(let x): return x[row].isNaN ? nil : .number(x[row])
        }
    }

    func isPresent(_ row: Int) -> Bool {
        switch self {
        case .strings(let s): return s[row] != nil
        case .numbers(let x): return !x[row].isNaN
        }
    }
}

/// The used columns of one chunk of rows, as read, with each row's completeness.
struct RawChunk {
    let count: Int
    /// The source row of the chunk's first row (for messages).
    var start = 0
    var numbers: [String: [Double]] = [:]
    var strings: [String: [String?]] = [:]
    var complete: [Bool]

    /// A categorical column's values, looked up once for a loop over the rows.
    func categorical(_ column: String) -> CategoricalValues {
        if let s = strings[column] { return .strings(s) }
        return .numbers(numbers[column]!)
    }

    /// A multiple-membership group: whether each row names a membership (present, with a
    /// nonzero weight), as a closure over the columns looked up once.
    func membership(group: String, weight: String?) -> (Int) -> Bool {
        let values = categorical(group)
        guard let weight else { return { values.isPresent($0) } }
        let w = numbers[weight]!
        return { values.isPresent($0) && w[$0] != 0 }
    }

    /// A numeric variable's values at `rows`.
    func numeric(_ v: Variable, rows: [Int]) -> [Double] {
        switch v {
        case .column(let c):
            let col = numbers[c]!
            return rows.map { col[$0] }
        case .transform(_, let e):
            var values: [String: [Double]] = [:]
            for c in e.columns { let col = numbers[c]!; values[c] = rows.map { col[$0] } }
            return e.evaluate(values, count: rows.count)
        case .factor:
            preconditionFailure("factor() is categorical")
        }
    }
}

/// Reads the formula's columns for a range of rows and marks complete rows.
///
/// A row is complete when the response, every fixed and random-effect variable (every column a
/// transform reads), every grouping column of an ordinary factor, and every weight of a present
/// multiple membership are non-missing. Missing is NA, NaN or empty in the file, nothing else:
/// in a complete row, an infinite number (`Inf`, `1e400`) or a transform that is not finite
/// (`log(0)`, `sqrt(-1)`, an overflow) is an `InputError` naming the column or term and the row.
/// A missing multiple-membership group column only means that membership is absent.
struct ChunkReader {
    let source: TableSource
    let types: [String: ColumnType]
    let formula: Formula

    func checkNumeric(_ v: Variable, role: String) throws {
        for c in v.columns where types[c] == .string {
            if case .column = v {
                throw InputError("\(role) '\(c)' is not numeric: column '\(c)' holds strings")
            }
            throw InputError("\(role) '\(v.name)' uses column '\(c)', which holds strings, not numbers")
        }
    }

    func read(_ rows: Range<Int>) throws -> RawChunk {
        var chunk = RawChunk(count: rows.count, start: rows.lowerBound, complete: Array(repeating: true, count: rows.count))
        for c in formula.columns {
            switch types[c]! {
            case .numeric: chunk.numbers[c] = try source.readNumeric(c, rows: rows)
            case .string: chunk.strings[c] = try source.readStrings(c, rows: rows)
            }
        }
        let all = Array(0..<rows.count)
        // Plain columns: missing drops the row.
        var required: [String] = []
        var transforms: [Variable] = []
        for v in [formula.response] + (formula.failures.map { [$0] } ?? []) + formula.offsets
            + formula.fixed.terms.flatMap(\.variables) + formula.random.flatMap({ $0.effects.terms.flatMap(\.variables) }) {
            if case .transform = v {
                if !transforms.contains(v) { transforms.append(v) }
                required += v.columns
            } else {
                required.append(v.factorColumn)
            }
        }
        for rt in formula.random { if case .factor(let cols) = rt.grouping { required += cols } }
        if let w = formula.weights { required.append(w) }
        if let v = formula.residualVariance { required.append(v.column) }
        var marked: Set<String> = []
        for c in required where marked.insert(c).inserted { markMissing(c, in: &chunk) }
        // Multiple membership: a present group needs its weight.
        for rt in formula.random {
            guard case .multipleMembership(let groups, let weights) = rt.grouping, !weights.isEmpty else { continue }
            for (g, w) in zip(groups, weights) {
                let wv = chunk.numbers[w]!, group = chunk.categorical(g)
                for i in 0..<rows.count where wv[i].isNaN && group.isPresent(i) {
                    chunk.complete[i] = false
                }
            }
        }
        try checkFinite(chunk, transforms: transforms, all: all)
        if let w = formula.weights, let values = chunk.numbers[w],
           let i = values.indices.first(where: { chunk.complete[$0] && values[$0] <= 0 }) {
            throw InputError("\(source.name) \(source.rowDescription(chunk.start + i)): the weight in column '\(w)' is "
                + "\(rNumber(values[i])); precision weights must be positive (the row's residual variance is σ²/w)")
        }
        return chunk
    }

    /// In the complete rows: every number read is finite, and so is every transform of them.
    /// The error names the earliest row at fault (the first column or term in formula order).
    private func checkFinite(_ chunk: RawChunk, transforms: [Variable], all: [Int]) throws {
        var first: (row: Int, message: () -> String)?
        func note(_ row: Int, _ message: @escaping () -> String) {
            if first == nil || row < first!.row { first = (row, message) }
        }
        for c in formula.columns {
            guard let x = chunk.numbers[c],
                  let i = x.indices.first(where: { chunk.complete[$0] && x[$0].isInfinite }) else { continue }
            note(i) { "column '\(c)' holds \(rNumber(x[i])), not a finite number (missing values are NA, NaN or empty)" }
        }
        for v in transforms {
            let values = chunk.numeric(v, rows: all)
            guard let i = values.indices.first(where: { chunk.complete[$0] && !values[$0].isFinite }) else { continue }
            note(i) {
                let inputs = v.columns.map { "\($0) = \(rNumber(chunk.numbers[$0]![i]))" }.joined(separator: ", ")
                return "\(v.name) is \(rNumber(values[i])) (\(inputs)), not a finite number"
            }
        }
        if let (row, message) = first {
            throw InputError("\(source.name) \(source.rowDescription(chunk.start + row)): \(message())")
        }
    }

    private func markMissing(_ c: String, in chunk: inout RawChunk) {
        if let s = chunk.strings[c] {
            for i in 0..<chunk.count where s[i] == nil { chunk.complete[i] = false }
        } else if let x = chunk.numbers[c] {
            for i in 0..<chunk.count where x[i].isNaN { chunk.complete[i] = false }
        }
    }
}

/// Runs `body` on every segment of `segmentRows` rows of `rows` (given as its chunks of at most
/// `chunkRows` rows; segments numbered from 0 at `rows.lowerBound`), on up to `threads` threads; each thread starts from its own copy of
/// `state` and hands it to `finished` at the end. Segments are handed out in order; after a
/// failure no new segment starts, `failed` is called for each one that failed, and the error
/// thrown is that of the first failing segment, whatever the threads.
func forEachSegment<State>(rows: Range<Int>, segmentRows: Int, chunkRows: Int, threads: Int, state: State,
                           body: (inout State, _ segment: Int, _ chunks: [Range<Int>]) throws -> Void,
                           failed: (Int) -> Void = { _ in }, finished: (State) -> Void = { _ in }) throws {
    let segments = (rows.count + segmentRows - 1) / segmentRows
    let readRows = min(chunkRows, segmentRows)
    let work = SegmentQueue(count: segments)
    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, segments))) { _ in
        var local = state
        while let s = work.next() {
            let start = rows.lowerBound + s * segmentRows
            let end = min(start + segmentRows, rows.upperBound)
            let chunks = stride(from: start, to: end, by: readRows).map { $0..<min($0 + readRows, end) }
            do {
                try body(&local, s, chunks)
            } catch {
                work.fail(error, segment: s)
                failed(s)
            }
        }
        finished(local)
    }
    if let error = work.error { throw error }
}

/// Lets the work of segments 0, 1, 2, … through one at a time and in that order, whatever order
/// the threads bring it in: sums made inside are the same bit for bit for any number of threads.
final class SegmentTurnstile: @unchecked Sendable {
    private let condition = NSCondition()
    private var next = 0

    /// Waits until segments 0 ..< `index` have passed, runs `body`, then lets segment `index` + 1 in.
    func pass(_ index: Int, _ body: () -> Void) {
        condition.lock()
        defer { condition.unlock() }
        while next != index { condition.wait() }
        body()
        next += 1
        condition.broadcast()
    }

    /// Lets the segments after `index` through when segment `index` failed (its result is discarded).
    func skip(_ index: Int) { pass(index) {} }
}

/// Hands out segment numbers in order to worker threads; after a failure, hands out no more.
/// The error kept is that of the first failing segment.
private final class SegmentQueue: @unchecked Sendable {
    private let lock = NSLock()
    private let count: Int
    private var nextIndex = 0
    private var failedSegment = Int.max
    private(set) var error: Error?

    init(count: Int) { self.count = count }

    func next() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard error == nil, nextIndex < count else { return nil }
        nextIndex += 1
        return nextIndex - 1
    }

    func fail(_ e: Error, segment: Int) {
        lock.lock()
        if segment < failedSegment { error = e; failedSegment = segment }
        lock.unlock()
    }
}

/// Values appended from several threads.
private final class LockedArray<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var values: [Element] = []

    func append(_ value: Element) {
        lock.lock()
        values.append(value)
        lock.unlock()
    }
}

/// What the levels pass collects: row counts and the level sets.
private struct LevelTally {
    init(complete: Int, total: Int, numeric: Int, variableLevels: [LevelSet], groupingLevels: [[LevelSet]],
         interactionKeys: [Set<[LevelValue]>]) {
        self.complete = complete
        self.total = total
        minimum = Array(repeating: .infinity, count: numeric)
        maximum = Array(repeating: -.infinity, count: numeric)
        self.variableLevels = variableLevels
        self.groupingLevels = groupingLevels
        self.interactionKeys = interactionKeys
    }

    var complete: Int
    var total: Int
    /// The smallest and largest value of each numeric variable in the complete rows.
    var minimum: [Double]
    var maximum: [Double]
    var variableLevels: [LevelSet]
    var groupingLevels: [[LevelSet]]
    var interactionKeys: [Set<[LevelValue]>]

    mutating func add(_ chunk: RawChunk, categorical: [Variable], random: [RandomTerm], numeric: [Variable]) {
        total += chunk.count
        let rows = chunk.complete.indices.filter { chunk.complete[$0] }
        for (k, v) in numeric.enumerated() {
            for x in chunk.numeric(v, rows: rows) {
                minimum[k] = Swift.min(minimum[k], x)
                maximum[k] = Swift.max(maximum[k], x)
            }
        }
        let variables = categorical.map { chunk.categorical($0.factorColumn) }
        let groupings: [[CategoricalValues]] = random.map { rt in
            switch rt.grouping {
            case .factor(let cols): return cols.map { chunk.categorical($0) }
            case .multipleMembership(let groups, _): return groups.map { chunk.categorical($0) }
            }
        }
        let members: [[(Int) -> Bool]] = random.map { rt in
            guard case .multipleMembership(let groups, let weights) = rt.grouping else { return [] }
            return groups.indices.map { chunk.membership(group: groups[$0], weight: weights.isEmpty ? nil : weights[$0]) }
        }
        for i in 0..<chunk.count where chunk.complete[i] {
            complete += 1
            for (vi, values) in variables.enumerated() { variableLevels[vi].insert(values.value(i)!) }
            for k in random.indices {
                if members[k].isEmpty {
                    let values = groupings[k].map { $0.value(i)! }
                    for (ci, v) in values.enumerated() { groupingLevels[k][ci].insert(v) }
                    if values.count > 1 { interactionKeys[k].insert(values) }
                } else {
                    for (m, isMember) in members[k].enumerated() where isMember(i) {
                        groupingLevels[k][0].insert(groupings[k][m].value(i)!)
                    }
                }
            }
        }
    }

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        func values(_ v: [LevelValue]) {
            w.int(v.count)
            for x in v {
                switch x {
                case .string(let s): w.bool(true); w.string(s)
                case .number(let d): w.bool(false); w.double(d)
                }
            }
        }
        w.int(complete); w.int(total)
        w.int(minimum.count); for (a, b) in zip(minimum, maximum) { w.double(a); w.double(b) }
        w.int(variableLevels.count); for l in variableLevels { values(l.sorted()) }
        w.int(groupingLevels.count)
        for g in groupingLevels { w.int(g.count); for l in g { values(l.sorted()) } }
        w.int(interactionKeys.count)
        for keys in interactionKeys { w.int(keys.count); for k in keys { values(k) } }
        return w.bytes
    }

    init(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        func values() -> [LevelValue] {
            (0..<r.int()).map { _ in r.bool() ? .string(r.string()) : .number(r.double()) }
        }
        func set() -> LevelSet { var s = LevelSet(); for v in values() { s.insert(v) }; return s }
        complete = r.int(); total = r.int()
        let numeric = r.int()
        minimum = []; maximum = []
        for _ in 0..<numeric { minimum.append(r.double()); maximum.append(r.double()) }
        variableLevels = (0..<r.int()).map { _ in set() }
        groupingLevels = (0..<r.int()).map { _ in (0..<r.int()).map { _ in set() } }
        interactionKeys = (0..<r.int()).map { _ in Set((0..<r.int()).map { _ in values() }) }
    }

    mutating func formUnion(_ other: LevelTally) {
        complete += other.complete
        total += other.total
        for k in minimum.indices {
            minimum[k] = Swift.min(minimum[k], other.minimum[k])
            maximum[k] = Swift.max(maximum[k], other.maximum[k])
        }
        for i in variableLevels.indices { variableLevels[i].formUnion(other.variableLevels[i]) }
        for k in groupingLevels.indices { for c in groupingLevels[k].indices { groupingLevels[k][c].formUnion(other.groupingLevels[k][c]) } }
        for k in interactionKeys.indices { interactionKeys[k].formUnion(other.interactionKeys[k]) }
    }
}
