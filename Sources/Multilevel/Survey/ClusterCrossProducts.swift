import Foundation

/// The weighted cross-products of each cluster of the finest grouping (schools), from one pass
/// over the rows: all the pseudo-likelihood, its β̂ and σ̂², every cluster's score and every
/// replicate need (no later step reads the rows).
///
/// For cluster j with rows i, level-1 weights wᵢ (unscaled), random-effects covariates zᵢ (the d
/// columns of all the terms: the school's, then with three levels the district's) and vᵢ = [xᵢ; yᵢ]:
/// Aⱼ = Σ wᵢ zᵢzᵢ' (d × d), Bⱼ = Σ wᵢ zᵢvᵢ' (d × (p+1)), Cⱼ = Σ wᵢ vᵢvᵢ' ((p+1) × (p+1)), the
/// count nⱼ, Σ wᵢ and Σ wᵢ² (for the scaling); and, each checked constant within the cluster:
/// the level-2 and level-3 weights, the parent (district), the PSU, the stratum, the
/// finite-population correction and each replicate's factor.
///
/// Rows are summed per segment in row order, and the segments' sums are added in segment order,
/// on one rank or many: the sums are the same bit for bit for any number of threads and ranks.
struct ClusterCrossProducts {
    /// The model's fixed-effect names and random terms (the cluster's grouping factor's, then its parent's).
    let fixedNames: [String]
    let terms: [RandomEffectsTerm]
    /// The cluster factor's name and its levels' labels.
    let clusterName: String
    let clusterLabels: [String]
    /// d (random effects per cluster) and p + 1.
    let d: Int
    let p1: Int
    var count: [Double]
    var sumW: [Double]
    var sumW2: [Double]
    /// The level-2 weight (1 in a design of one level).
    var weight2: [Double]
    /// Three levels: each cluster's parent (its level in the coarser grouping, e.g. the school's
    /// district; −1 without one) and the parent's weight, the level-3 weight (1 without one).
    var parent: [Int]
    var weight3: [Double]
    /// Replicate r's factor on the cluster: its replicate weight over its full-sample weight (the
    /// product of the levels' weights), the same on all its rows (clusters × replicates).
    var replicateFactor: [Double]
    let replicates: Int
    /// Each cluster's finite-population correction column value (NaN without one).
    var fpc: [Double]
    /// Aⱼ, Bⱼ (column-major d × (p+1)) and Cⱼ, cluster after cluster.
    var a: [Double]
    var b: [Double]
    var c: [Double]
    /// Each cluster's PSU and stratum, as indices into `psuLabels` and `strataLabels` (in order of
    /// first cluster). A PSU is identified by its label within its stratum: the same label in two
    /// strata is two PSUs.
    var psu: [Int] = []
    var stratum: [Int] = []
    var psuLabels: [String] = []
    var strataLabels: [String] = []
    /// Label bytes → index, for `psuLabels` and `strataLabels`.
    private var psuIndex: [[UInt8]: Int] = [:]
    private var strataIndex: [[UInt8]: Int] = [:]

    var clusters: Int { count.count }
    /// The rows summed.
    var rows: Int { Int(count.reduce(0, +)) }
    var p: Int { p1 - 1 }

    init(fixedNames: [String], terms: [RandomEffectsTerm], clusterName: String, clusterLabels: [String], replicates: Int = 0) {
        self.fixedNames = fixedNames
        self.terms = terms
        self.clusterName = clusterName
        self.clusterLabels = clusterLabels
        d = terms.reduce(0) { $0 + $1.dimension }
        p1 = fixedNames.count + 1
        let n = clusterLabels.count
        count = Array(repeating: 0, count: n)
        sumW = count
        sumW2 = count
        weight2 = count
        weight3 = count
        parent = Array(repeating: -1, count: n)
        self.replicates = replicates
        replicateFactor = Array(repeating: .nan, count: n * replicates)
        fpc = Array(repeating: .nan, count: n)
        a = Array(repeating: 0, count: n * d * d)
        b = Array(repeating: 0, count: n * d * p1)
        c = Array(repeating: 0, count: n * p1 * p1)
    }

    /// Cluster j's slices.
    func aOf(_ j: Int) -> ArraySlice<Double> { a[(j * d * d)..<((j + 1) * d * d)] }
    func bOf(_ j: Int) -> ArraySlice<Double> { b[(j * d * p1)..<((j + 1) * d * p1)] }
    func cOf(_ j: Int) -> ArraySlice<Double> { c[(j * p1 * p1)..<((j + 1) * p1 * p1)] }
}

/// One segment's sums: the clusters it meets, in order of first row.
struct ClusterPartial {
    var codes: [Int] = []
    var stats: [Double] = []          // per cluster: n, Σw, Σw², then A, B, C
    var weight2: [Double] = []
    var weight3: [Double] = []
    var parent: [Int] = []
    /// Replicate factors, slot after slot (NaN until a row with a positive full-sample weight).
    var replicate: [Double] = []
    var fpc: [Double] = []
    var psu: [String] = []
    var stratum: [String] = []
    /// The first row of each cluster in the segment (for messages).
    var firstRow: [Int] = []
    /// The PSU and stratum values as read, to compare each row with (not sent between ranks).
    var psuValues: [LevelValue] = []
    var stratumValues: [LevelValue] = []

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.ints(codes); w.doubles(stats); w.doubles(weight2); w.doubles(weight3); w.ints(parent); w.doubles(replicate); w.doubles(fpc)
        w.strings(psu); w.strings(stratum); w.ints(firstRow)
        return w.bytes
    }

    init() {}

    init(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        codes = r.ints(); stats = r.doubles(); weight2 = r.doubles(); weight3 = r.doubles(); parent = r.ints(); replicate = r.doubles(); fpc = r.doubles()
        psu = r.strings(); stratum = r.strings(); firstRow = r.ints()
    }
}

extension ClusterCrossProducts {
    /// The columns the survey reads for each row, resolved against a frame.
    struct Columns {
        let weights: [String]
        let psu: String?
        let strata: String?
        /// Where a row's cluster comes from: this random term's grouping level; and its parent's
        /// (three levels), from this one's.
        let clusterTerm: Int
        var parentTerm: Int? = nil
        /// The columns of each random term of the frame, and whether they enter Aⱼ and Bⱼ (not
        /// when the only term stands for the PSUs of a model without random effects).
        let termColumns: [Int]
        let randomEffects: Bool
        /// Replicate weight columns (full-sample scale).
        var replicates: [String] = []
        /// The finite-population correction column (`--fpc`), constant within a cluster.
        var fpc: String? = nil
    }

    /// Two replicate factors agree when they differ by less than 1e-3 of their size: replicate
    /// weights are published rounded (PISA's to 5 significant digits).
    static func sameFactor(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-3 * max(abs(a), abs(b)) + 1e-12 }

    /// One pass over `frame`'s rows (this rank's slab, on `threads` threads), then the ranks'
    /// segments added in order on rank 0, and the result on every rank.
    static func accumulate(_ frame: ModelFrame, columns: Columns, terms: [RandomEffectsTerm], clusterName: String,
                           clusterLabels: [String], threads: Int) throws -> ClusterCrossProducts {
        var total = ClusterCrossProducts(fixedNames: frame.fixedDesign.columns.map(\.name), terms: terms,
                                         clusterName: clusterName, clusterLabels: clusterLabels, replicates: columns.replicates.count)
        let communicator = frame.communicator
        let reader = ChunkReader(source: frame.source, types: frame.types, formula: frame.formula)
        let size = 3 + total.d * total.d + total.d * total.p1 + total.p1 * total.p1
        let turnstile = SegmentTurnstile()
        let lock = NSLock()
        var kept: [(segment: Int, partial: ClusterPartial)] = []
        var foldError: InputError?
        var seen = [Int](repeating: -1, count: total.clusters)   // first row of each cluster added so far
        func fold(_ part: ClusterPartial) {
            guard foldError == nil else { return }
            do { try total.add(part, size: size, seen: &seen, columns: columns, frame: frame) } catch {
                foldError = error as? InputError ?? InputError("\(error)")
            }
        }
        try communicator.agree {
            try forEachSegment(rows: frame.slab, segmentRows: frame.segmentRows, chunkRows: frame.chunkRows, threads: threads,
                               state: (), body: { _, segment, chunks in
                var part = ClusterPartial()
                var slot: [Int: Int] = [:]
                for rows in chunks {
                    let raw = try reader.read(rows)
                    try accumulateChunk(raw, model: frame.modelChunk(raw), into: &part, slot: &slot, size: size,
                                        d: total.d, p1: total.p1, columns: columns, frame: frame)
                }
                if communicator.isRoot {
                    turnstile.pass(segment) { fold(part) }
                } else {
                    lock.lock(); kept.append((segment, part)); lock.unlock()
                }
            }, failed: { if communicator.isRoot { turnstile.skip($0) } })
        }
        // Rank 0 adds the other ranks' segments after its own, in rank order and segment order.
        let tag = 13
        if communicator.size > 1 {
            if communicator.isRoot {
                for r in 1..<communicator.size {
                    var header = ByteReader(communicator.receive(from: r, tag: tag).bytes)
                    for _ in 0..<header.int() { fold(ClusterPartial(decoding: communicator.receive(from: r, tag: tag).bytes)) }
                }
            } else {
                var header = ByteWriter()
                header.int(kept.count)
                communicator.send(header.bytes, to: 0, tag: tag)
                for k in kept.sorted(by: { $0.segment < $1.segment }) { communicator.send(k.partial.encoded(), to: 0, tag: tag) }
            }
        }
        // Rank 0 alone holds the sums: it checks them, and every rank learns the outcome.
        try communicator.agree {
            if let foldError { throw foldError }
            if communicator.isRoot { try total.checkWeights(columns: columns) }
        }
        if communicator.size > 1 {
            total = ClusterCrossProducts(decoding: communicator.broadcast(communicator.isRoot ? total.encoded() : [], root: 0), like: total)
        }
        return total
    }

    /// Adds a chunk's complete rows to a segment's sums, checking each row's weights and labels.
    private static func accumulateChunk(_ raw: RawChunk, model: ModelChunk, into part: inout ClusterPartial, slot: inout [Int: Int],
                                        size: Int, d: Int, p1: Int, columns: Columns, frame: ModelFrame) throws {
        let keep = raw.complete.indices.filter { raw.complete[$0] }
        let p = p1 - 1
        let weights = columns.weights.map { raw.numeric(.column($0), rows: keep) }
        let replicates = columns.replicates.map { raw.numeric(.column($0), rows: keep) }
        let nr = replicates.count
        let fpcValues = columns.fpc.map { raw.numeric(.column($0), rows: keep) }
        let psu = columns.psu.map { raw.categorical($0) }
        let strata = columns.strata.map { raw.categorical($0) }
        let cluster = model.terms[columns.clusterTerm]
        let group = frame.randomTerms[columns.clusterTerm].term.grouping.name
        func clusterLabel(_ code: Int) -> String { frame.randomTerms[columns.clusterTerm].levels.names[code] }
        var v = [Double](repeating: 0, count: p1), z = [Double](repeating: 0, count: d)
        func value(_ values: CategoricalValues, _ column: String, _ r: Int) throws -> LevelValue {
            guard let value = values.value(keep[r]) else {
                throw InputError("\(frame.source.name) \(frame.source.rowDescription(raw.start + keep[r])): column '\(column)' is missing; "
                    + "every row of a survey needs its \(column == columns.psu ? "primary sampling unit" : "stratum")")
            }
            return value
        }
        for r in 0..<model.count {
            let row = raw.start + keep[r]
            for (level, w) in zip(columns.weights, weights) {
                let x = w[r]
                if x.isNaN || x < 0 || x.isInfinite {
                    let what = x.isNaN ? "missing" : rNumber(x)
                    throw InputError("\(frame.source.name) \(frame.source.rowDescription(row)): the sampling weight in column '\(level)' is "
                        + "\(what); sampling weights must be finite and not negative")
                }
            }
            let code = Int(cluster.levels[r])
            let s: Int
            if let existing = slot[code] {
                s = existing
            } else {
                s = part.codes.count
                slot[code] = s
                part.codes.append(code)
                part.stats.append(contentsOf: repeatElement(0, count: size))
                part.weight2.append(weights.count > 1 ? weights[1][r] : 1)
                part.weight3.append(weights.count > 2 ? weights[2][r] : 1)
                part.parent.append(columns.parentTerm.map { Int(model.terms[$0].levels[r]) } ?? -1)
                part.replicate.append(contentsOf: repeatElement(.nan, count: nr))
                part.fpc.append(fpcValues?[r] ?? .nan)
                let pv = try psu.map { try value($0, columns.psu!, r) } ?? .string("")
                let sv = try strata.map { try value($0, columns.strata!, r) } ?? .string("")
                part.psuValues.append(pv)
                part.stratumValues.append(sv)
                part.psu.append(pv.name)
                part.stratum.append(sv.name)
                part.firstRow.append(row)
            }
            if let k = columns.parentTerm, Int(model.terms[k].levels[r]) != part.parent[s] {
                let parentTerm = frame.randomTerms[k]
                throw InputError("\(group) '\(clusterLabel(code))' lies in \(parentTerm.term.grouping.name) "
                    + "'\(parentTerm.levels.names[part.parent[s]])' at \(frame.source.rowDescription(part.firstRow[s])) and "
                    + "'\(parentTerm.levels.names[Int(model.terms[k].levels[r])])' at \(frame.source.rowDescription(row)): the groupings are crossed, "
                    + "and crossed designs have no accepted sampling-weighted likelihood")
            }
            if weights.count > 2, weights[2][r] != part.weight3[s] {
                throw InputError("the level-3 weight in column '\(columns.weights[2])' varies within \(group) "
                    + "'\(clusterLabel(code))': \(rNumber(part.weight3[s])) at "
                    + "\(frame.source.rowDescription(part.firstRow[s])) and \(rNumber(weights[2][r])) at \(frame.source.rowDescription(row))")
            }
            if weights.count > 1, weights[1][r] != part.weight2[s] {
                throw InputError("the level-2 weight in column '\(columns.weights[1])' varies within \(group) "
                    + "'\(clusterLabel(code))': \(rNumber(part.weight2[s])) at "
                    + "\(frame.source.rowDescription(part.firstRow[s])) and \(rNumber(weights[1][r])) at \(frame.source.rowDescription(row))")
            }
            func check(_ values: CategoricalValues?, _ column: String?, _ first: LevelValue) throws {
                guard let values, let column else { return }
                let v = try value(values, column, r)
                guard v != first else { return }
                throw InputError("column '\(column)' varies within \(group) '\(clusterLabel(code))' ('\(first.name)' at "
                    + "\(frame.source.rowDescription(part.firstRow[s])), '\(v.name)' at \(frame.source.rowDescription(row))): "
                    + "the clusters must be nested in the \(column == columns.psu ? "PSUs" : "strata")")
            }
            if let fpcValues, let column = columns.fpc {
                let x = fpcValues[r]
                guard x.isFinite && x > 0 else {
                    throw InputError("\(frame.source.name) \(frame.source.rowDescription(row)): the finite-population correction in column '\(column)' is "
                        + "\(x.isNaN ? "missing" : rNumber(x)); it must be a sampling fraction (at most 1) or a number of PSUs in the population")
                }
                if x != part.fpc[s] {
                    throw InputError("column '\(column)' varies within \(group) '\(clusterLabel(code))': the finite-population correction is the stratum's")
                }
            }
            try check(psu, columns.psu, part.psuValues[s])
            try check(strata, columns.strata, part.stratumValues[s])
            // Replicate factors: replicate weight over full-sample weight, one per cluster.
            let full = weights.reduce(1.0) { $0 * $1[r] }
            for (q, column) in columns.replicates.enumerated() {
                let x = replicates[q][r]
                if x.isNaN || x < 0 || x.isInfinite {
                    throw InputError("\(frame.source.name) \(frame.source.rowDescription(row)): the replicate weight in column '\(column)' is "
                        + "\(x.isNaN ? "missing" : rNumber(x)); replicate weights must be finite and not negative")
                }
                guard full > 0 else { continue }
                let factor = x / full, stored = part.replicate[s * nr + q]
                if stored.isNaN {
                    part.replicate[s * nr + q] = factor
                } else if !sameFactor(stored, factor) {
                    throw InputError("the replicate weight in column '\(column)' is \(rNumber(stored)) times the full-sample weight at "
                        + "\(frame.source.rowDescription(part.firstRow[s])) and \(rNumber(factor)) times at \(frame.source.rowDescription(row)), "
                        + "within \(group) '\(clusterLabel(code))': replicates must reweight whole clusters")
                }
            }
            let w = weights[0][r]
            for j in 0..<p { v[j] = model.x[r * p + j] }
            v[p] = model.y[r]
            if columns.randomEffects {
                var t = 0
                for (k, tr) in model.terms.enumerated() {
                    let pk = columns.termColumns[k]
                    for e in 0..<pk { z[t + e] = tr.z[r * pk + e] }
                    t += pk
                }
            }
            part.stats.withUnsafeMutableBufferPointer { st in
                let base = s * size
                st[base] += 1
                st[base + 1] += w
                st[base + 2] += w * w
                var o = base + 3
                for col in 0..<d { let wz = w * z[col]; for row in 0..<d { st[o + row + col * d] += wz * z[row] } }
                o += d * d
                for col in 0..<p1 { let wv = w * v[col]; for row in 0..<d { st[o + row + col * d] += wv * z[row] } }
                o += d * p1
                for col in 0..<p1 { let wv = w * v[col]; for row in 0..<p1 { st[o + row + col * p1] += wv * v[row] } }
            }
        }
    }

    /// Adds a segment's sums (segments in order), checking that a cluster's level-2 weight, PSU
    /// and stratum agree with those of its earlier segments.
    private mutating func add(_ part: ClusterPartial, size: Int, seen: inout [Int], columns: Columns, frame: ModelFrame) throws {
        let group = clusterName
        for (s, j) in part.codes.enumerated() {
            if seen[j] >= 0 {
                let at = "\(frame.source.rowDescription(seen[j])) and \(frame.source.rowDescription(part.firstRow[s]))"
                if part.parent[s] != parent[j] {
                    throw InputError("\(group) '\(clusterLabels[j])' lies in two clusters of the coarser grouping (\(at)): the groupings "
                        + "are crossed, and crossed designs have no accepted sampling-weighted likelihood")
                }
                if part.weight3[s] != weight3[j] {
                    throw InputError("the level-3 weight in column '\(columns.weights[2])' varies within \(group) '\(clusterLabels[j])': "
                        + "\(rNumber(weight3[j])) and \(rNumber(part.weight3[s])) at \(at)")
                }
                for q in 0..<replicates {
                    let a = replicateFactor[j * replicates + q], b = part.replicate[s * replicates + q]
                    if a.isNaN { replicateFactor[j * replicates + q] = b } else if !b.isNaN && !Self.sameFactor(a, b) {
                        throw InputError("the replicate weight in column '\(columns.replicates[q])' is \(rNumber(a)) and \(rNumber(b)) times the "
                            + "full-sample weight within \(group) '\(clusterLabels[j])' (\(at)): replicates must reweight whole clusters")
                    }
                }
                if !(part.fpc[s].isNaN && fpc[j].isNaN) && part.fpc[s] != fpc[j] {
                    throw InputError("column '\(columns.fpc ?? "")' varies within \(group) '\(clusterLabels[j])' (\(at)): the finite-population correction is the stratum's")
                }
                if part.weight2[s] != weight2[j] {
                    throw InputError("the level-2 weight in column '\(columns.weights[1])' varies within \(group) '\(clusterLabels[j])': "
                        + "\(rNumber(weight2[j])) and \(rNumber(part.weight2[s])) at \(at)")
                }
                for (column, labels, index, given) in [(columns.psu, psuLabels, psu, part.psu), (columns.strata, strataLabels, stratum, part.stratum)] {
                    guard let column, !labels[index[j]].utf8.elementsEqual(given[s].utf8) else { continue }
                    throw InputError("column '\(column)' varies within \(group) '\(clusterLabels[j])' ('\(labels[index[j]])' and '\(given[s])' at \(at)): "
                        + "the clusters must be nested in the \(column == columns.psu ? "PSUs" : "strata")")
                }
            } else {
                seen[j] = part.firstRow[s]
                weight2[j] = part.weight2[s]
                weight3[j] = part.weight3[s]
                parent[j] = part.parent[s]
                for q in 0..<replicates { replicateFactor[j * replicates + q] = part.replicate[s * replicates + q] }
                fpc[j] = part.fpc[s]
                if psu.isEmpty { psu = Array(repeating: -1, count: clusters); stratum = psu }
                // A PSU is its label within its stratum (Stata's and survey's nest = TRUE).
                stratum[j] = Self.index(of: part.stratum[s], key: Array(part.stratum[s].utf8), in: &strataLabels, &strataIndex)
                psu[j] = Self.index(of: part.psu[s], key: Array(part.stratum[s].utf8) + [0xFF] + Array(part.psu[s].utf8),
                                    in: &psuLabels, &psuIndex)
            }
            let base = s * size
            count[j] += part.stats[base]
            sumW[j] += part.stats[base + 1]
            sumW2[j] += part.stats[base + 2]
            var o = base + 3
            for e in 0..<(d * d) { a[j * d * d + e] += part.stats[o + e] }
            o += d * d
            for e in 0..<(d * p1) { b[j * d * p1 + e] += part.stats[o + e] }
            o += d * p1
            for e in 0..<(p1 * p1) { c[j * p1 * p1 + e] += part.stats[o + e] }
        }
    }

    /// The index of the label with `key` (bytes), appended when new.
    private static func index(of label: String, key: [UInt8], in labels: inout [String], _ index: inout [[UInt8]: Int]) -> Int {
        if let i = index[key] { return i }
        labels.append(label)
        index[key] = labels.count - 1
        return labels.count - 1
    }

    /// Weights every cluster can use: some positive level-1 weight in each cluster that has rows,
    /// and a positive total.
    func checkWeights(columns: Columns) throws {
        for j in 0..<clusters where count[j] > 0 && sumW[j] <= 0 {
            throw InputError("the level-1 sampling weights in column '\(columns.weights[0])' add up to 0 in \(clusterName) '\(clusterLabels[j])'; "
                + "a cluster needs a positive total weight")
        }
        let total = (0..<clusters).reduce(0.0) { $0 + weight2[$1] * sumW[$1] }
        if !(total > 0) {
            throw InputError("the sampling weights add up to 0: there is nothing to estimate")
        }
    }

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.doubles(count); w.doubles(sumW); w.doubles(sumW2); w.doubles(weight2); w.doubles(weight3); w.ints(parent)
        w.doubles(replicateFactor); w.doubles(fpc)
        w.doubles(a); w.doubles(b); w.doubles(c)
        w.ints(psu); w.ints(stratum); w.strings(psuLabels); w.strings(strataLabels)
        return w.bytes
    }

    init(decoding bytes: [UInt8], like shape: ClusterCrossProducts) {
        self = shape
        var r = ByteReader(bytes)
        count = r.doubles(); sumW = r.doubles(); sumW2 = r.doubles(); weight2 = r.doubles(); weight3 = r.doubles(); parent = r.ints()
        replicateFactor = r.doubles(); fpc = r.doubles()
        a = r.doubles(); b = r.doubles(); c = r.doubles()
        psu = r.ints(); stratum = r.ints(); psuLabels = r.strings(); strataLabels = r.strings()
    }
}
