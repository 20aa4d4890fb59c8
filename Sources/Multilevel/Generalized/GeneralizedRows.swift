import Foundation

/// A GLMM's model rows, which PIRLS revisits at every iteration: held in memory, or read
/// again from the file at every pass when they do not fit.
///
/// Each rank holds the rows of its slab (`ModelFrame.slab`), segment by segment as the frame
/// cuts them (`CrossProductAccumulator.segmentRows` rows of the file), in compact form: X and
/// the terms' covariates as doubles, level indices as 32-bit integers, and per row the
/// response (a proportion for the binomial), its prior weight (the binomial's trials) and its
/// offset. When they would take more than half the memory a fit may use (the rest is the
/// factor's), every pass reads its segments from the file again instead (*streamed*), each
/// made exactly as it was the first time, so the two give the same bits.
///
/// A pass (`evaluate`) takes β and b = Λu (the same on every rank) and computes on every row
/// η = offset + Xβ + Zb, μ, the deviance residual, the log-density, and the working weight
/// W = wt (dμ/dη)²/V(μ) and response ỹ = η − offset + (y − μ)/(dμ/dη); it returns the sums and
/// the cross-products of √W [Z X ỹ]. Sums are made per segment in row order and the segments'
/// sums added in file order over all ranks, and the cross-products use the accumulator's fixed
/// tree, so a pass gives the same bits for any number of threads and ranks.
final class GeneralizedRows: @unchecked Sendable {
    struct Segment {
        var rows: ModelChunk
        /// Prior weights: the binomial's trials (1 for a 0/1 response), else 1.
        var priorWeights: [Double]
    }

    let frame: ModelFrame
    let distribution: ResponseDistribution
    let threads: Int
    /// This rank's segments in file order, when the rows are in memory; empty when streamed.
    private var stored: [Segment] = []
    /// Whether every pass reads the rows from the file again.
    let streamed: Bool
    /// This rank's segments.
    let segmentCount: Int
    /// Rows over all ranks.
    let count: Int
    /// The memory predicted on this rank for the rows in memory, and for the segments in flight
    /// of a pass (all that streamed rows need).
    let predictedBytes: (inMemory: Double, inFlight: Double)
    private let reader: ChunkReader
    /// Streamed: the fixed-effect columns kept (`keepFixedColumns`; nil: all), and the
    /// replicate whose responses replace the file's (`simulateResponses`), applied as each
    /// segment is read.
    private var keptColumns: [Int]?
    private var simulation: (beta: [Double], b: [Double], seed: UInt64, replicate: Int)?

    var communicator: Communicator { frame.communicator }
    let terms: [RandomEffectsTerm]
    private(set) var fixedNames: [String]

    /// Reads this rank's slab into memory, or (streamed) through once to check it, checking
    /// each response against the family's support. Throws, before reading, when even the
    /// segments in flight of the streamed path are predicted not to fit in `limit`.
    init(frame: ModelFrame, distribution: ResponseDistribution, threads: Int, limit: MemoryLimit) throws {
        self.frame = frame
        self.distribution = distribution
        self.threads = threads
        terms = frame.randomEffectsTerms
        fixedNames = frame.fixedDesign.columns.map(\.name)
        reader = ChunkReader(source: frame.source, types: frame.types, formula: frame.formula)
        let slab = frame.slab
        // Per row: X, y, prior weight, offset; per term and membership a level, a weight and
        // the covariates; twice over for the working copies of the segments in flight, with
        // (streamed) their plans, about as large again.
        let memberships = frame.randomTerms.map { bt -> Double in
            if case .multipleMembership(let groups, _) = bt.term.grouping { return Double(groups.count) }
            return 1
        }
        let perRow = 8 * Double(fixedNames.count + 3)
            + zip(terms, memberships).reduce(0.0) { $0 + $1.1 * 12 + 8 * Double($1.0.dimension) }
        let inFlight = 3 * perRow * Double(min(threads * frame.segmentRows, slab.count))
        let inMemory = perRow * Double(slab.count) + inFlight
        predictedBytes = (inMemory, inFlight)
        streamed = inMemory > limit.bytes / 2
        if streamed && inFlight > limit.bytes / 2 {
            throw InputError("reading the model rows again at every pass needs about \(FactorizationChoice.formatBytes(inFlight)) "
                + "on this rank for the segments in flight (\(Int(perRow)) bytes a row, \(frame.segmentRows) rows a segment, "
                + "\(threads) threads) and \(FactorizationChoice.formatBytes(limit.bytes)) is available (\(limit.source)): "
                + "fewer --threads or a larger --max-memory")
        }
        segmentCount = (slab.count + frame.segmentRows - 1) / frame.segmentRows
        count = frame.completeRows
        if streamed {
            // One pass through the rows, for the errors in their responses.
            try frame.communicator.agree { try forEachSegmentOfRows { _, _ in } }
        } else {
            var stored = [Segment?](repeating: nil, count: segmentCount)
            let lock = NSLock()
            try frame.communicator.agree {
                try forEachSegmentOfRows { s, segment in
                    lock.lock()
                    stored[s] = segment
                    lock.unlock()
                }
            }
            self.stored = stored.map { $0! }
        }
    }

    /// Segment s of this rank's slab, read from the file (`chunks`: its rows), as the rows in
    /// memory hold it: the family's response, the fixed columns kept and the replicate's responses.
    private func readSegment(_ s: Int, chunks: [Range<Int>]) throws -> Segment {
        var rows: ModelChunk?
        var weights: [Double] = []
        for range in chunks {
            let raw = try reader.read(range)
            var chunk = try frame.modelChunk(raw)
            let lines = raw.complete.indices.filter { raw.complete[$0] }.map { raw.start + $0 }
            weights += try Self.prepareResponse(&chunk, distribution: distribution, formula: frame.formula,
                                                source: frame.source, lines: lines)
            if rows == nil { rows = chunk } else { rows!.append(chunk) }
        }
        var segment = Segment(rows: rows!, priorWeights: weights)
        if let keptColumns { Self.keep(keptColumns, of: frame.fixedDesign.columns.count, in: &segment) }
        if let simulation {
            segment.rows.y = simulatedResponses(segment, s, beta: simulation.beta, b: simulation.b,
                                                seed: simulation.seed, replicate: simulation.replicate)
        }
        return segment
    }

    /// Runs `body` on each of this rank's segments (read again, when streamed), on up to
    /// `threads` threads, handed out in order (so a body waiting on its predecessors' turn never
    /// waits on one not yet started). After a failure to read, `failed` is called for each
    /// segment that failed, no new segment starts, and the first failure is thrown.
    private func forEachSegmentOfRows(_ body: (Int, Segment) -> Void, failed: (Int) -> Void = { _ in }) throws {
        if stored.count == segmentCount {
            TiledCholesky.parallel(stored.indices, threads: threads) { body($0, stored[$0]) }
            return
        }
        try forEachSegment(rows: frame.slab, segmentRows: frame.segmentRows, chunkRows: frame.chunkRows, threads: threads,
                           state: (), body: { _, s, chunks in body(s, try readSegment(s, chunks: chunks)) }, failed: failed)
    }

    /// The same on every rank: a failure to read on any rank ends the pass on all of them.
    private func everyRank<T>(_ body: () throws -> T) throws -> T {
        do { return try communicator.agree(body) } catch let e as InputError { throw RowsUnreadable(message: e.message) }
    }

    /// Makes a chunk's response the family's: a binomial's proportion and trials (from
    /// `cbind(successes, failures)`, else a 0/1 value and weight 1), a Poisson's count. Throws
    /// naming the line of the first value outside the family's support.
    private static func prepareResponse(_ chunk: inout ModelChunk, distribution: ResponseDistribution, formula: Formula,
                                        source: TableSource, lines: [Int]) throws -> [Double] {
        let n = chunk.count
        var weights = [Double](repeating: 1, count: n)
        func fail(_ i: Int, _ what: String) -> InputError {
            InputError("\(source.name) \(source.rowDescription(lines[i])): \(what)")
        }
        switch distribution.family {
        case .binomial:
            if chunk.failures.isEmpty {
                for i in 0..<n where chunk.y[i] != 0 && chunk.y[i] != 1 {
                    throw fail(i, "the response '\(formula.response.name)' is \(rNumber(chunk.y[i])); a binomial response is 0 or 1 (or two values of a factor, or cbind(successes, failures))")
                }
            } else {
                for i in 0..<n {
                    let s = chunk.y[i], f = chunk.failures[i]
                    guard s >= 0, f >= 0, s == s.rounded(), f == f.rounded() else {
                        throw fail(i, "cbind(\(formula.response.name), \(formula.failures!.name)) is (\(rNumber(s)), \(rNumber(f))); successes and failures are whole numbers ≥ 0")
                    }
                    weights[i] = s + f
                    chunk.y[i] = s + f > 0 ? s / (s + f) : 0
                }
            }
        case .poisson:
            for i in 0..<n where !(chunk.y[i] >= 0) || chunk.y[i] != chunk.y[i].rounded() {
                throw fail(i, "the response '\(formula.response.name)' is \(rNumber(chunk.y[i])); a Poisson response is a count (a whole number ≥ 0)")
            }
        }
        return weights
    }

    /// Keeps only the fixed-effect columns `keep` (aliased ones dropped).
    func keepFixedColumns(_ keep: [Int]) {
        working = nil
        let p = fixedNames.count
        fixedNames = keep.map { fixedNames[$0] }
        if streamed {
            keptColumns = keep.map { keptColumns?[$0] ?? $0 }
        } else {
            for s in stored.indices { Self.keep(keep, of: p, in: &stored[s]) }
        }
    }

    private static func keep(_ keep: [Int], of p: Int, in segment: inout Segment) {
        let n = segment.rows.count
        var x = [Double](repeating: 0, count: n * keep.count)
        for i in 0..<n { for (jNew, j) in keep.enumerated() { x[i * keep.count + jNew] = segment.rows.x[i * p + j] } }
        segment.rows.x = x
    }

    /// What one pass found.
    struct Pass {
        /// Σ squared deviance residuals.
        var devianceResiduals: Double
        /// Σ log p(y | μ): the conditional log-likelihood, Σ log p(y | μ = y) − ½ Σ devres.
        var logDensity: Double
        /// The cross-products of √W [Z X ỹ] at this point.
        var crossProducts: CrossProducts
    }

    /// Where a pass evaluates η: at β and b, or (the first pass of a fit) at glm's starting means.
    enum Point {
        case effects(beta: [Double], b: [Double])
        case start
    }

    /// The plan of the passes after the first (nil until the first pass has found Z'Z's pattern).
    private var working: WorkingCrossProducts?
    /// Σ log p(y | μ = y) over every row (the saturated model): log p(y | μ) is this minus ½ devres.
    /// Summed in the first pass after the responses are set (`SaturatedSums`), not in a pass of its own.
    private var saturated: Double?

    /// The saturated log-density's per-segment parts, collected during a pass when it is not known.
    private final class SaturatedSums: @unchecked Sendable {
        private let lock = NSLock()
        private var parts: [Double]
        private let distribution: ResponseDistribution
        init?(needed: Bool, segments: Int, distribution: ResponseDistribution) {
            guard needed else { return nil }
            parts = [Double](repeating: 0, count: segments)
            self.distribution = distribution
        }
        func add(_ s: Int, _ segment: Segment) {
            let d = distribution
            let value = zip(segment.rows.y, segment.priorWeights).reduce(0.0) { $0 + d.logDensity($1.0, $1.0, weight: $1.1) }
            lock.lock()
            parts[s] = value
            lock.unlock()
        }
        var values: [Double] { parts }
    }

    /// The saturated log-density after a pass that collected its parts (every rank takes part).
    private func saturatedLogDensity(_ sums: SaturatedSums?) -> Double {
        if let sums { saturated = orderedSums(sums.values, width: 1)[0] }
        return saturated!
    }

    /// One pass over every rank's rows at `point` (see the type's discussion). The first finds
    /// the pattern of Z'Z with the general accumulator and makes the plan of the others.
    func evaluate(_ point: Point) throws -> Pass {
        if let working {
            let fold = WorkingCrossProducts.Fold(working, segments: segmentCount, communicator: communicator)
            let saturatedSums = SaturatedSums(needed: saturated == nil, segments: segmentCount, distribution: distribution)
            try everyRank {
                try forEachSegmentOfRows({ s, segment in
                    saturatedSums?.add(s, segment)
                    let plan = working.plans.isEmpty ? working.makePlan(segment.rows) : working.plans[s]
                    let v = self.workingValues(segment, point)
                    fold.add(s, working.segmentSums(plan, rows: segment.rows, sqrtWeights: v.sqrtWeights, response: v.response,
                                                    deviance: v.deviance), plan: plan)
                }, failed: fold.skip)
            }
            let (crossProducts, deviance) = fold.finish()
            return Pass(devianceResiduals: deviance, logDensity: saturatedLogDensity(saturatedSums) - deviance / 2, crossProducts: crossProducts)
        }
        let accumulator = CrossProductAccumulator(terms: terms, fixedNames: fixedNames, keepsGroups: !communicator.isRoot)
        var partials = [Double](repeating: 0, count: segmentCount)
        let lock = NSLock()
        let saturatedSums = SaturatedSums(needed: saturated == nil, segments: segmentCount, distribution: distribution)
        try everyRank {
            try forEachSegmentOfRows({ s, segment in
                saturatedSums?.add(s, segment)
                let v = workingValues(segment, point)
                var rows = segment.rows
                let n = rows.count, p = fixedNames.count
                for i in 0..<n {
                    let w = v.sqrtWeights[i]
                    rows.y[i] = v.response[i]
                    for j in 0..<p { rows.x[i * p + j] *= w }
                    for k in rows.terms.indices {
                        let pk = rows.terms[k].z.count / n
                        for t in 0..<pk { rows.terms[k].z[i * pk + t] *= w }
                    }
                }
                var builder = SegmentBuilder(layout: accumulator.layout)
                builder.add(rows)
                accumulator.add(builder.finish(), index: s)
                lock.lock()
                partials[s] = v.deviance
                lock.unlock()
            }, failed: { accumulator.skip(index: $0) })
        }
        accumulator.finishGroups()
        let crossProducts = accumulator.reduced(over: communicator)
        working = WorkingCrossProducts(pattern: crossProducts, segments: streamed ? nil : stored.map(\.rows), threads: threads)
        let deviance = orderedSums(partials, width: 1)[0]
        return Pass(devianceResiduals: deviance, logDensity: saturatedLogDensity(saturatedSums) - deviance / 2, crossProducts: crossProducts)
    }

    /// Sums of per-segment values (`width` per segment), over every rank's segments in file order.
    private func orderedSums(_ partials: [Double], width: Int) -> [Double] {
        var everything: [Double]
        if communicator.size > 1 {
            everything = []
            var writer = ByteWriter()
            writer.doubles(partials)
            for bytes in communicator.allGather(writer.bytes) {
                var reader = ByteReader(bytes)
                everything += reader.doubles()
            }
        } else {
            everything = partials
        }
        var total = [Double](repeating: 0, count: width)
        for s in 0..<(everything.count / width) {
            for k in 0..<width { total[k] += everything[s * width + k] }
        }
        return total
    }

    /// The rows whose fitted mean is numerically at the end of its range (within 10 ε of 0 or,
    /// for the binomial, of 1: |η| beyond about 36 on the logit scale), at β and b, over every rank.
    func boundaryRows(beta: [Double], b: [Double]) throws -> Int {
        let d = distribution, limit = 10 * Double.ulpOfOne
        var partials = [Double](repeating: 0, count: segmentCount)
        let lock = NSLock()
        try everyRank {
            try forEachSegmentOfRows { s, segment in
                let eta = linearPredictor(segment, beta: beta, b: b)
                var count = 0.0
                for e in eta {
                    let mu = d.mean(e)
                    if mu <= limit || (d.family == .binomial && mu >= 1 - limit) { count += 1 }
                }
                lock.lock()
                partials[s] = count
                lock.unlock()
            }
        }
        return Int(orderedSums(partials, width: 1)[0])
    }

    /// Replaces every row's response by a draw from the model at β and b (a parametric bootstrap
    /// replicate): a binomial count of the row's trials with probability μ (as a proportion), or
    /// a Poisson count of mean μ. Each row's draw comes from its own stream, named by the seed,
    /// the replicate, the row's segment of the file and its place there, so it is the same on
    /// any number of threads and ranks, and streamed rows draw it again as each segment is read.
    func simulateResponses(beta: [Double], b: [Double], seed: UInt64, replicate: Int) {
        saturated = nil
        if streamed {
            simulation = (beta, b, seed, replicate)
            return
        }
        TiledCholesky.parallel(stored.indices, threads: threads) { s in
            let y = simulatedResponses(stored[s], s, beta: beta, b: b, seed: seed, replicate: replicate)
            segmentLock.lock()
            stored[s].rows.y = y
            segmentLock.unlock()
        }
    }
    private let segmentLock = NSLock()

    /// Segment s's responses drawn for `replicate` (see `simulateResponses`).
    private func simulatedResponses(_ segment: Segment, _ s: Int, beta: [Double], b: [Double], seed: UInt64, replicate: Int) -> [Double] {
        let d = distribution
        var replicateStream = Xoshiro256(seed: seed ^ 0x2545_F491_4F6C_DD1D, stream: replicate)
        let replicateSeed = replicateStream.next()
        let firstSegment = frame.slab.lowerBound / frame.segmentRows
        let eta = linearPredictor(segment, beta: beta, b: b)
        let wt = segment.priorWeights
        var y = [Double](repeating: 0, count: eta.count)
        var segmentStream = Xoshiro256(seed: replicateSeed, stream: firstSegment + s)
        let segmentSeed = segmentStream.next()
        for i in eta.indices {
            var random = Xoshiro256(seed: segmentSeed, stream: i)
            let mu = d.mean(eta[i])
            switch d.family {
            case .binomial:
                let trials = Int(wt[i].rounded())
                y[i] = trials > 0 ? Double(random.nextBinomial(trials: trials, probability: mu)) / Double(trials) : 0
            case .poisson:
                y[i] = Double(random.nextPoisson(mean: mu))
            }
        }
        return y
    }

    /// Σ of the squared deviance residuals per level of the model's one term (a scalar term of
    /// a grouping factor: adaptive Gauss–Hermite quadrature), at β and b. Per segment in row
    /// order, then the segments in file order over every rank.
    func levelDevianceResiduals(beta: [Double], b: [Double]) throws -> [Double] {
        let q = b.count, d = distribution
        var partials = [(levels: [Int32], sums: [Double])](repeating: ([], []), count: segmentCount)
        let lock = NSLock()
        try everyRank {
            try forEachSegmentOfRows { s, segment in
                let eta = linearPredictor(segment, beta: beta, b: b)
                let levels = segment.rows.terms[0].levels, y = segment.rows.y, wt = segment.priorWeights
                var sums: [Int32: Double] = [:]
                for i in eta.indices { sums[levels[i], default: 0] += d.devianceResidual(y[i], d.mean(eta[i]), weight: wt[i]) }
                let keys = sums.keys.sorted()
                lock.lock()
                partials[s] = (keys, keys.map { sums[$0]! })
                lock.unlock()
            }
        }
        var all = partials
        if communicator.size > 1 {
            var writer = ByteWriter()
            writer.int(partials.count)
            for part in partials { writer.int32s(part.levels); writer.doubles(part.sums) }
            all = []
            for bytes in communicator.allGather(writer.bytes) {
                var reader = ByteReader(bytes)
                for _ in 0..<reader.int() { all.append((reader.int32s(), reader.doubles())) }
            }
        }
        var total = [Double](repeating: 0, count: q)
        for part in all { for (level, value) in zip(part.levels, part.sums) { total[Int(level)] += value } }
        return total
    }

    /// η of every row of a segment at β and b.
    func linearPredictor(_ segment: Segment, beta: [Double], b: [Double]) -> [Double] {
        let rows = segment.rows, n = rows.count, p = beta.count
        var eta = [Double](repeating: 0, count: n)
        eta.withUnsafeMutableBufferPointer { eta in
            rows.x.withUnsafeBufferPointer { x in
                for i in 0..<n {
                    var value = rows.offset.isEmpty ? 0 : rows.offset[i]
                    for j in 0..<p { value += x[i * p + j] * beta[j] }
                    eta[i] = value
                }
            }
            // Term by term, each term's arrays looked up once.
            b.withUnsafeBufferPointer { b in
                for (k, tr) in rows.terms.enumerated() {
                    let pk = terms[k].dimension, offset = terms[k].offset, m = tr.memberships
                    tr.levels.withUnsafeBufferPointer { levels in
                    tr.weights.withUnsafeBufferPointer { weights in
                    tr.z.withUnsafeBufferPointer { z in
                        for i in 0..<n {
                            for mi in 0..<m {
                                let level = levels[i * m + mi], w = weights[i * m + mi]
                                if level < 0 || w == 0 { continue }
                                let base = offset + Int(level) * pk
                                var dot = 0.0
                                for t in 0..<pk { dot += z[i * pk + t] * b[base + t] }
                                eta[i] += w * dot
                            }
                        }
                    }
                    }
                    }
                }
            }
        }
        return eta
    }

    /// A segment's √W, √W ỹ and Σ devres at `point`: W = wt (dμ/dη)²/V(μ), ỹ = η − offset + (y − μ)/(dμ/dη).
    private func workingValues(_ segment: Segment, _ point: Point) -> (sqrtWeights: [Double], response: [Double], deviance: Double) {
        let d = distribution
        let rows = segment.rows
        let n = rows.count, y = rows.y, wt = segment.priorWeights, offset = rows.offset
        let eta: [Double]
        switch point {
        case .effects(let beta, let b): eta = linearPredictor(segment, beta: beta, b: b)
        case .start:
            eta = (0..<n).map { i in d.linkValue(d.initialMean(y[i], weight: wt[i])) + (offset.isEmpty ? 0 : offset[i]) }
        }
        var deviance = 0.0
        var sqrtWeights = [Double](repeating: 0, count: n), response = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let mu = d.mean(eta[i]), dmu = d.meanDerivative(eta[i])
            deviance += d.devianceResidual(y[i], mu, weight: wt[i])
            let s = (wt[i] * dmu * dmu / d.variance(mu)).squareRoot()
            sqrtWeights[i] = s
            response[i] = s * (eta[i] - (offset.isEmpty ? 0 : offset[i]) + (y[i] - mu) / dmu)
        }
        return (sqrtWeights, response, deviance)
    }

    /// The bytes the rows take in memory on this rank (for `--verbose`; 0 when streamed).
    var bytes: Double {
        stored.reduce(0.0) { total, s in
            let r = s.rows
            return total + 8 * Double(r.x.count + r.y.count + r.offset.count + s.priorWeights.count)
                + r.terms.reduce(0.0) { $0 + 4 * Double($1.levels.count) + 8 * Double($1.weights.count + $1.z.count) }
        }
    }
}

extension ModelChunk {
    /// Appends another chunk's rows (the next rows of the same segment).
    mutating func append(_ other: ModelChunk) {
        count += other.count
        x += other.x
        y += other.y
        failures += other.failures
        offset += other.offset
        logWeights += other.logWeights
        for k in terms.indices {
            terms[k].levels += other.terms[k].levels
            terms[k].weights += other.terms[k].weights
            terms[k].z += other.terms[k].z
        }
    }
}

/// The model rows could not be read again from the file on some rank (the streamed path): it
/// ends the fit, never only a bootstrap replicate.
public struct RowsUnreadable: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
