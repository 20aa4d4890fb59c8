import Foundation

/// Accumulates `CrossProducts` from the rows, in fixed segments, on several threads and
/// ranks, with a result that depends on neither the number of threads, nor the chunk size, nor
/// the number of ranks.
///
/// The sum [Z X y]'[Z X y] is cut into *blocks*: one per level of each term (`p_k` columns of Z)
/// and one for [X y] (`p + 1` columns). Each row adds a few block products: level a with itself,
/// a with each other level b of the row, and a with [X y]. Those are written as keyed entries,
/// the key naming the pair of blocks, so no row looks anything up:
///
/// 1. The rows are cut into segments of `segmentRows` rows of the file. A segment's entries are
///    radix-sorted by key (stable, so a key's products stay in row order) and summed into a
///    *run*: its distinct keys, ascending, and their summed blocks.
/// 2. Runs are merged as a binary counter: run 2k+1 merges into run 2k, and so on up, with
///    older values first in every sum, until a *group* of 2^`counterHeight` segments is whole.
/// 3. Groups are added to the total one after another, in file order; the last, partial group
///    is its counter's runs merged oldest first. The tree depends only on the number of rows.
///
/// Threads take whole segments; a finished run waits for its predecessors before it merges,
/// so every floating-point sum happens in the same order whatever the threads and the chunk
/// size (chunks are read within a segment). Ranks read whole groups (`groupRows`): rank 0 adds
/// its groups to the total as they finish, the others keep theirs and rank 0 adds them after
/// its own, in rank order, so the total is bit for bit the one process's. Memory: a segment of
/// entries per thread, the total, and at most one run per counter level, each of at most one
/// group: the bound does not grow with the number of rows once the pattern of Z'Z stops
/// growing (other ranks than 0 also keep their own finished groups until the end).
public final class CrossProductAccumulator: @unchecked Sendable {
    /// Rows of the file in one segment: the unit of sorting and of the fixed summation order.
    public static let segmentRows = 16_384
    /// Levels of the binary counter below the total: 2⁴ segments = 262,144 rows to a group.
    static let counterHeight = 4

    let terms: [RandomEffectsTerm]
    let fixedNames: [String]
    let layout: BlockLayout
    /// Whether finished groups are kept (ranks after the first) instead of added to the total.
    private let keepsGroups: Bool
    private let turnstile = SegmentTurnstile()
    private var counter: [PartialSums?] = []
    private var total: PartialSums
    private(set) var groups: [PartialSums] = []

    init(terms: [RandomEffectsTerm], fixedNames: [String], keepsGroups: Bool = false) {
        self.terms = terms
        self.fixedNames = fixedNames
        self.keepsGroups = keepsGroups
        layout = BlockLayout(terms: terms, fixedCount: fixedNames.count)
        total = PartialSums(layout: layout)
    }

    /// Rows in one group: the unit that ranks divide among themselves.
    static func groupRows(segmentRows: Int) -> Int { segmentRows << counterHeight }

    /// Adds segment `index`'s sums (counted from the first segment this accumulator reads);
    /// waits until segments `0 ..< index` have been added.
    func add(_ segment: PartialSums, index: Int) {
        turnstile.pass(index) { carry(segment) }
    }

    /// Merges a segment's sums up the binary counter (under the turnstile).
    private func carry(_ segment: PartialSums) {
        var carry = segment
        var level = 0
        while level < counter.count, let older = counter[level] {
            carry = PartialSums.merge(older, carry, layout: layout)
            counter[level] = nil
            level += 1
        }
        if level == Self.counterHeight {
            addGroup(carry)
        } else if level == counter.count {
            counter.append(carry)
        } else {
            counter[level] = carry
        }
    }

    /// Lets the segments after `index` proceed when segment `index` failed (the result is then discarded).
    func skip(index: Int) { turnstile.skip(index) }

    private func addGroup(_ group: PartialSums) {
        if keepsGroups { groups.append(group) } else { total = PartialSums.merge(total, group, layout: layout) }
    }

    /// Closes the last, partial group (its counter's runs, oldest first).
    func finishGroups() {
        let pending = counter.reversed().compactMap { $0 }
        counter = []
        guard let first = pending.first else { return }
        addGroup(pending.dropFirst().reduce(first) { PartialSums.merge($0, $1, layout: layout) })
    }

    /// Adds another rank's group after everything added so far.
    func addReceivedGroup(_ group: PartialSums) { total = PartialSums.merge(total, group, layout: layout) }

    /// The finished cross-products, with Z'Z laid out on its block-complete pattern.
    func finish() -> CrossProducts {
        finishGroups()
        return layout.crossProducts(total.run, xyxy: total.xyxy, rows: total.rows, logWeights: total.logWeights, terms: terms,
                                    fixedNames: fixedNames)
    }
}

extension CrossProductAccumulator {
    /// The total over every rank, each accumulator holding its rank's slab (`keepsGroups` on
    /// all but rank 0): rank 0 adds the others' groups after its own, in rank order, and
    /// broadcasts the result, so every rank returns the one process's cross-products.
    func reduced(over communicator: Communicator) -> CrossProducts {
        guard communicator.size > 1 else { return finish() }
        let tag = 11
        if communicator.isRoot {
            for r in 1..<communicator.size {
                var header = ByteReader(communicator.receive(from: r, tag: tag).bytes)
                for _ in 0..<header.int() {
                    addReceivedGroup(PartialSums(decoding: communicator.receive(from: r, tag: tag).bytes))
                }
            }
            return CrossProducts(decoding: communicator.broadcast(finish().encoded(), root: 0))
        }
        var header = ByteWriter()
        header.int(groups.count)
        communicator.send(header.bytes, to: 0, tag: tag)
        for g in groups { communicator.send(g.encoded(), to: 0, tag: tag) }
        return CrossProducts(decoding: communicator.broadcast([], root: 0))
    }
}

/// Block numbering of [Z X y]: block b < `zBlocks` is level b of the terms in order (its columns
/// `start[b] ..< start[b] + dimension[b]` of Z), block `zBlocks` is [X y].
struct BlockLayout {
    let zBlocks: Int
    let start: [Int]
    /// Columns in each block, [X y] last.
    let dimension: [Int]
    let xyDimension: Int
    let q: Int
    /// The block of level 0 of each term, and the term of each block.
    let termBlockBase: [Int]
    let blockTerm: [Int]

    init(terms: [RandomEffectsTerm], fixedCount: Int) {
        var start: [Int] = [], dimension: [Int] = [], termBlockBase: [Int] = [], blockTerm: [Int] = []
        for (k, t) in terms.enumerated() {
            termBlockBase.append(start.count)
            for level in 0..<t.levels.count {
                blockTerm.append(k)
                start.append(t.offset + level * t.dimension)
                dimension.append(t.dimension)
            }
        }
        zBlocks = start.count
        q = terms.reduce(0) { $0 + $1.columns }
        xyDimension = fixedCount + 1
        self.start = start
        self.dimension = dimension + [xyDimension]
        self.termBlockBase = termBlockBase
        self.blockTerm = blockTerm
    }

    /// Keys order block pairs (a, b), a ≤ b, by b then a.
    @inline(__always) func key(_ a: Int, _ b: Int) -> UInt64 { UInt64(b) * UInt64(zBlocks + 1) + UInt64(a) }
    @inline(__always) func blocks(_ key: UInt64) -> (a: Int, b: Int) {
        let (b, a) = key.quotientAndRemainder(dividingBy: UInt64(zBlocks + 1))
        return (Int(a), Int(b))
    }
    @inline(__always) func size(_ key: UInt64) -> Int {
        let (a, b) = blocks(key)
        return dimension[a] * dimension[b]
    }
    /// Significant bits of a key.
    var keyBits: Int {
        let largest = key(zBlocks, zBlocks)
        return largest == 0 ? 1 : 64 - largest.leadingZeroBitCount
    }

    /// Lays the summed blocks out as `CrossProducts`: Z'Z's upper triangle in compressed columns
    /// (for column block b: its partner blocks a < b in order, then its own upper triangle),
    /// [Z'X Z'y] dense, and [X y]'[X y] mirrored to both triangles.
    func crossProducts(_ run: BlockRun, xyxy: [Double], rows: Int, logWeights: Double, terms: [RandomEffectsTerm],
                       fixedNames: [String]) -> CrossProducts {
        let p1 = xyDimension
        var zxy = [Double](repeating: 0, count: q * p1)
        var blockRowStarts = [0], blockRows: [Int32] = []
        var colStarts = [Int](repeating: 0, count: q + 1)
        var rowIndex: [Int32] = [], values: [Double] = []
        rowIndex.reserveCapacity(run.values.count)
        values.reserveCapacity(run.values.count)
        // Where each key of the column block at hand starts in `run.values` (a block's keys are
        // consecutive, so the offsets run on; no array over all keys, which at 3.7·10^7 keys
        // took 0.3 GB at the peak of the accumulation).
        var keyOffsets: [Int] = []
        var offset = 0
        var i = 0
        for b in 0..<zBlocks {
            // Entries of column block b: partners a < b, then (b, b) if any row had level b.
            let first = i
            keyOffsets.removeAll(keepingCapacity: true)
            while i < run.keys.count, blocks(run.keys[i]).b == b {
                keyOffsets.append(offset)
                offset += size(run.keys[i])
                i += 1
            }
            var partners = first..<i
            var diagonal: Int?
            if let last = partners.last, blocks(run.keys[last]).a == b {
                diagonal = keyOffsets[last - first]
                partners = first..<last
            }
            blockRows.append(contentsOf: partners.map { Int32(blocks(run.keys[$0]).a) })
            blockRows.append(Int32(b))
            blockRowStarts.append(blockRows.count)
            let pb = dimension[b]
            for s in 0..<pb {
                for e in partners {
                    let a = blocks(run.keys[e]).a, pa = dimension[a], at = keyOffsets[e - first] + s * pa
                    for t in 0..<pa {
                        rowIndex.append(Int32(start[a] + t))
                        values.append(run.values[at + t])
                    }
                }
                for t in 0...s {
                    rowIndex.append(Int32(start[b] + t))
                    values.append(diagonal.map { run.values[$0 + t + s * pb] } ?? 0)
                }
                colStarts[start[b] + s + 1] = rowIndex.count
            }
        }
        // Column block [X y]: (a, [X y]) holds the p_a × (p + 1) block of [Z'X Z'y].
        while i < run.keys.count {
            let a = blocks(run.keys[i]).a, pa = dimension[a]
            for j in 0..<p1 { for t in 0..<pa { zxy[start[a] + t + j * q] = run.values[offset + t + j * pa] } }
            offset += size(run.keys[i])
            i += 1
        }
        var full = xyxy
        for b in 0..<p1 { for a in 0..<b { full[b + a * p1] = full[a + b * p1] } }
        return CrossProducts(rows: rows, terms: terms, fixedNames: fixedNames,
                             blockStart: start, blockTerm: blockTerm,
                             blockRowStarts: blockRowStarts, blockRows: blockRows,
                             zzColumnStarts: colStarts, zzRowIndices: rowIndex, zzValues: values,
                             zxy: zxy, xyxy: full, logWeights: logWeights)
    }
}

/// Distinct keys in ascending order with their summed blocks (`values`: each key's
/// p_a × p_b block, column-major, concatenated in key order).
struct BlockRun {
    var keys: [UInt64] = []
    var values: [Double] = []

    /// The sums of two runs; where both have a key, `older`'s value comes first in the sum.
    static func merge(_ older: BlockRun, _ newer: BlockRun, layout: BlockLayout) -> BlockRun {
        if older.keys.isEmpty { return newer }
        if newer.keys.isEmpty { return older }
        var out = BlockRun()
        out.keys.reserveCapacity(older.keys.count + newer.keys.count)
        out.values.reserveCapacity(older.values.count + newer.values.count)
        var i = 0, j = 0, vi = 0, vj = 0
        older.values.withUnsafeBufferPointer { ov in
            newer.values.withUnsafeBufferPointer { nv in
                while i < older.keys.count || j < newer.keys.count {
                    let ki = i < older.keys.count ? older.keys[i] : .max
                    let kj = j < newer.keys.count ? newer.keys[j] : .max
                    if ki < kj {
                        let n = layout.size(ki)
                        out.keys.append(ki); out.values.append(contentsOf: ov[vi..<(vi + n)])
                        i += 1; vi += n
                    } else if kj < ki {
                        let n = layout.size(kj)
                        out.keys.append(kj); out.values.append(contentsOf: nv[vj..<(vj + n)])
                        j += 1; vj += n
                    } else {
                        let n = layout.size(ki)
                        out.keys.append(ki)
                        for t in 0..<n { out.values.append(ov[vi + t] + nv[vj + t]) }
                        i += 1; j += 1; vi += n; vj += n
                    }
                }
            }
        }
        return out
    }
}

/// The sums over consecutive segments: their run of Z blocks, their [X y]'[X y] (upper
/// triangle), their row count and their Σ log w (precision weights).
struct PartialSums {
    var run: BlockRun
    var xyxy: [Double]
    var rows: Int
    var logWeights: Double

    init(run: BlockRun, xyxy: [Double], rows: Int, logWeights: Double) {
        self.run = run
        self.xyxy = xyxy
        self.rows = rows
        self.logWeights = logWeights
    }

    /// No rows yet.
    init(layout: BlockLayout) {
        self.init(run: BlockRun(), xyxy: [Double](repeating: 0, count: layout.xyDimension * layout.xyDimension), rows: 0,
                  logWeights: 0)
    }

    /// The sums of two partial sums, `older`'s values first in every sum.
    static func merge(_ older: PartialSums, _ newer: PartialSums, layout: BlockLayout) -> PartialSums {
        PartialSums(run: BlockRun.merge(older.run, newer.run, layout: layout),
                    xyxy: zip(older.xyxy, newer.xyxy).map { $0 + $1 }, rows: older.rows + newer.rows,
                    logWeights: older.logWeights + newer.logWeights)
    }

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.uint64s(run.keys); w.doubles(run.values); w.doubles(xyxy); w.int(rows); w.double(logWeights)
        return w.bytes
    }

    init(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        self.init(run: BlockRun(keys: r.uint64s(), values: r.doubles()), xyxy: r.doubles(), rows: r.int(), logWeights: r.double())
    }
}

/// Collects one segment's block products as keyed entries, then sorts and sums them into a run.
struct SegmentBuilder {
    let layout: BlockLayout
    private var keys: [UInt64] = []
    private var valueStart: [Int] = []
    private var values: [Double] = []
    private var xyxy: [Double]
    private var rows = 0
    private var logWeights = 0.0
    // Per-row scratch.
    private var rowBlocks: [Int] = []
    private var rowValueStart: [Int] = []
    private var rowValues: [Double] = []
    private var order: [Int] = []
    private var xy: [Double]
    // Z'[X y] blocks, summed in place in row order (one slot per block, in order of first row):
    // the same sums the sorted entries would give, without p + 1 values per row and block to sort.
    private var xySlot: [Int: Int] = [:]
    private var xyBlocks: [Int] = []
    private var xyValues: [Double] = []

    init(layout: BlockLayout) {
        self.layout = layout
        xyxy = [Double](repeating: 0, count: layout.xyDimension * layout.xyDimension)
        xy = [Double](repeating: 0, count: layout.xyDimension)
    }

    /// Adds the rows of a chunk (rows of one segment, in file order).
    mutating func add(_ chunk: ModelChunk) {
        let termBlockBase = layout.termBlockBase
        let p = layout.xyDimension - 1, p1 = p + 1
        for i in 0..<chunk.count {
            for j in 0..<p { xy[j] = chunk.x[i * p + j] }
            xy[p] = chunk.y[i]
            for b in 0..<p1 {
                let vb = xy[b]
                if vb == 0 { continue }
                for a in 0...b { xyxy[a + b * p1] += xy[a] * vb }
            }
            // The nonzero blocks of this row of Z, duplicates within a term (mm) merged.
            rowBlocks.removeAll(keepingCapacity: true)
            rowValues.removeAll(keepingCapacity: true)
            rowValueStart.removeAll(keepingCapacity: true)
            for (k, tr) in chunk.terms.enumerated() {
                let pk = layout.dimension[termBlockBase[k]]
                let m = tr.memberships
                let first = rowBlocks.count
                for mi in 0..<m {
                    let level = tr.levels[i * m + mi]
                    let w = tr.weights[i * m + mi]
                    if level < 0 || w == 0 { continue }
                    let block = termBlockBase[k] + Int(level)
                    if let existing = rowBlocks[first...].firstIndex(of: block) {
                        for t in 0..<pk { rowValues[rowValueStart[existing] + t] += w * tr.z[i * pk + t] }
                    } else {
                        rowBlocks.append(block)
                        rowValueStart.append(rowValues.count)
                        for t in 0..<pk { rowValues.append(w * tr.z[i * pk + t]) }
                    }
                }
            }
            order.removeAll(keepingCapacity: true)
            order.append(contentsOf: rowBlocks.indices)
            order.sort { rowBlocks[$0] < rowBlocks[$1] }
            for (oi, ia) in order.enumerated() {
                let a = rowBlocks[ia], pa = layout.dimension[a], va = rowValueStart[ia]
                // (a, a), full; (a, b) for the row's later blocks b; (a, [X y]).
                emit(layout.key(a, a))
                for s in 0..<pa { for t in 0..<pa { values.append(rowValues[va + t] * rowValues[va + s]) } }
                for ib in order[(oi + 1)...] {
                    let b = rowBlocks[ib], pb = layout.dimension[b], vb = rowValueStart[ib]
                    emit(layout.key(a, b))
                    for s in 0..<pb { for t in 0..<pa { values.append(rowValues[va + t] * rowValues[vb + s]) } }
                }
                if let slot = xySlot[a] {
                    xyValues.withUnsafeMutableBufferPointer { out in
                        var o = slot
                        for j in 0..<p1 { for t in 0..<pa { out[o] += rowValues[va + t] * xy[j]; o += 1 } }
                    }
                } else {
                    xySlot[a] = xyValues.count
                    xyBlocks.append(a)
                    for j in 0..<p1 { for t in 0..<pa { xyValues.append(rowValues[va + t] * xy[j]) } }
                }
            }
        }
        rows += chunk.countedRows ?? chunk.count
        logWeights += chunk.logWeights
    }

    @inline(__always) private mutating func emit(_ key: UInt64) {
        keys.append(key)
        valueStart.append(values.count)
    }

    /// Sorts the entries by key (stable) and sums each key's blocks in row order.
    mutating func finish() -> PartialSums {
        let xyBlock = layout.zBlocks
        for a in xyBlocks {
            emit(layout.key(a, xyBlock))
            let start = xySlot[a]!
            values.append(contentsOf: xyValues[start..<(start + layout.size(layout.key(a, xyBlock)))])
        }
        let order = RadixSort.stableOrder(keys, bits: layout.keyBits)
        // Sizes first, then every block written or added in place.
        var distinct = 0, size = 0, previous = UInt64.max
        for e in order where keys[Int(e)] != previous {
            previous = keys[Int(e)]
            distinct += 1
            size += layout.size(previous)
        }
        var run = BlockRun(keys: [UInt64](repeating: 0, count: distinct), values: [Double](repeating: 0, count: size))
        run.keys.withUnsafeMutableBufferPointer { outKeys in
            run.values.withUnsafeMutableBufferPointer { out in
                values.withUnsafeBufferPointer { v in
                    var next = -1, base = 0, n = 0
                    previous = .max
                    for e in order {
                        let key = keys[Int(e)], first = valueStart[Int(e)]
                        if key != previous {
                            base += n
                            n = layout.size(key)
                            next += 1
                            outKeys[next] = key
                            previous = key
                            for t in 0..<n { out[base + t] = v[first + t] }
                        } else {
                            for t in 0..<n { out[base + t] += v[first + t] }
                        }
                    }
                }
            }
        }
        return PartialSums(run: run, xyxy: xyxy, rows: rows, logWeights: logWeights)
    }
}

/// Least-significant-digit radix sort of integer keys.
enum RadixSort {
    /// The permutation that sorts `keys` ascending (only their low `bits` bits vary), ties in input order.
    static func stableOrder(_ keys: [UInt64], bits: Int) -> [Int32] {
        let n = keys.count
        var order = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i) }
            count = n
        }
        var scratch = order
        let digitBits = 11, radix = 1 << digitBits, mask = UInt64(radix - 1)
        var counts = [Int](repeating: 0, count: radix)
        var shift = 0
        keys.withUnsafeBufferPointer { k in
            while shift < bits {
                for d in 0..<radix { counts[d] = 0 }
                for i in 0..<n { counts[Int((k[i] >> UInt64(shift)) & mask)] += 1 }
                var total = 0
                for d in 0..<radix { let c = counts[d]; counts[d] = total; total += c }
                order.withUnsafeBufferPointer { src in
                    scratch.withUnsafeMutableBufferPointer { dst in
                        for i in 0..<n {
                            let e = src[i]
                            let d = Int((k[Int(e)] >> UInt64(shift)) & mask)
                            dst[counts[d]] = e
                            counts[d] += 1
                        }
                    }
                }
                swap(&order, &scratch)
                shift += digitBits
            }
        }
        return order
    }
}
