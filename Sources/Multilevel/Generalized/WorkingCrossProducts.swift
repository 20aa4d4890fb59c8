import Foundation

/// The cross-products of a GLMM's working rows √W [Z X ỹ], accumulated straight into the fixed
/// pattern of Z'Z that the first pass found: no sorting, no keys, per pass.
///
/// A *plan*, made once per segment of rows, lists the segment's distinct block pairs of Z'Z
/// (level a with level b of the same row, a ≤ b), its distinct blocks of Z'[X y], and for
/// every row which of them it adds to. A pass sums each segment's products into its own short
/// array in row order (threads take whole segments) and adds the segments' arrays to the
/// total in file order, over every rank (rank 0 adds the others' after its own), with the sum
/// of the deviance residuals as one more entry: the same bits for any number of threads and
/// ranks.
final class WorkingCrossProducts: @unchecked Sendable {
    /// The first pass's cross-products, whose layout every pass fills.
    let pattern: CrossProducts
    private let p1: Int
    /// Per block (one level of one term), its dimension and first column of Z.
    private let dims: [Int]
    private let starts: [Int]
    private let termBase: [Int]
    /// The total's layout: Z'Z's values, then [Z'X Z'y] (q × (p + 1)), then [X y]'[X y], then Σ devres.
    private let zxyBase: Int, xyxyBase: Int, devianceIndex: Int, totalCount: Int

    struct Plan {
        /// Row i's distinct blocks are `rowBlocks[rowBlockStart[i] ..< rowBlockStart[i + 1]]`
        /// (local block numbers, in increasing block order); its memberships, term by term, name
        /// one of them each (`membershipBlock`, −1 for an absent one); its pairs (i ≤ j over its
        /// distinct blocks, row-major) are `rowPairs[rowPairStart[i] ..< rowPairStart[i + 1]]`.
        var rowBlockStart: [Int32] = [0]
        var rowBlocks: [Int32] = []
        var membershipBlock: [Int32] = []
        var rowPairStart: [Int32] = [0]
        var rowPairs: [Int32] = []
        /// Where each local pair's and block's values start in the segment's array, and the index
        /// of every entry of that array in the total (−1: a lower-triangle entry, not stored).
        var pairStart: [Int] = []
        var blockStart: [Int] = []
        /// Each local block's dimension.
        var blockDims: [Int] = []
        var xyxyStart = 0
        var target: [Int] = []
        var count: Int { target.count }
    }
    /// Each of this rank's segments' plan, made once (rows in memory); empty when the rows are
    /// read again at every pass (`makePlan` then makes each segment's plan as it is read).
    private(set) var plans: [Plan] = []

    init(pattern: CrossProducts, segments: [ModelChunk]?, threads: Int) {
        self.pattern = pattern
        p1 = pattern.fixedCount + 1
        var dims: [Int] = [], starts: [Int] = [], termBase: [Int] = []
        for t in pattern.terms {
            termBase.append(dims.count)
            for level in 0..<t.levels.count { dims.append(t.dimension); starts.append(t.offset + level * t.dimension) }
        }
        self.dims = dims
        self.starts = starts
        self.termBase = termBase
        let q = pattern.randomEffectsCount
        zxyBase = pattern.zzValues.count
        xyxyBase = zxyBase + q * p1
        devianceIndex = xyxyBase + p1 * p1
        totalCount = devianceIndex + 1
        guard let segments else { return }
        // Each segment's plan on its own thread (a fixed function of the segment's rows).
        var plans = [Plan](repeating: Plan(), count: segments.count)
        let lock = NSLock()
        TiledCholesky.parallel(segments.indices, threads: threads) { s in
            let plan = makePlan(segments[s])
            lock.lock()
            plans[s] = plan
            lock.unlock()
        }
        self.plans = plans
    }

    /// The position in Z'Z's values of row r of block a in column c of block b (a ≤ b): a
    /// binary search of the column's row indices, which ascend (a level of the second of two
    /// crossed factors has thousands of partners at 10^7 rows).
    private func zzPosition(_ a: Int, _ b: Int, row r: Int, column c: Int) -> Int {
        let column = starts[b] + c, row = Int32(starts[a] + r)
        var lo = pattern.zzColumnStarts[column], hi = pattern.zzColumnStarts[column + 1]
        while lo < hi {
            let mid = (lo + hi) / 2
            if pattern.zzRowIndices[mid] < row { lo = mid + 1 } else { hi = mid }
        }
        precondition(lo < pattern.zzColumnStarts[column + 1] && pattern.zzRowIndices[lo] == row,
                     "a working row's pair of levels is outside the pattern of Z'Z")
        return lo
    }

    func makePlan(_ chunk: ModelChunk) -> Plan {
        var plan = Plan()
        var localBlock: [Int: Int32] = [:], blocks: [Int] = []
        var localPair: [Int: Int32] = [:], pairs: [(Int, Int)] = []
        localBlock.reserveCapacity(min(chunk.count * chunk.terms.count, dims.count))
        localPair.reserveCapacity(chunk.count * chunk.terms.count)
        let nb = dims.count
        var rowList: [Int] = [], memberships: [Int] = []
        for i in 0..<chunk.count {
            rowList.removeAll(keepingCapacity: true)
            memberships.removeAll(keepingCapacity: true)
            for (k, tr) in chunk.terms.enumerated() {
                let m = tr.memberships
                for mi in 0..<m {
                    let level = tr.levels[i * m + mi], w = tr.weights[i * m + mi]
                    if level < 0 || w == 0 { memberships.append(-1); continue }
                    let block = termBase[k] + Int(level)
                    memberships.append(block)
                    if !rowList.contains(block) { rowList.append(block) }
                }
            }
            rowList.sort()
            for block in memberships {
                plan.membershipBlock.append(block < 0 ? -1 : Int32(rowList.firstIndex(of: block)!))
            }
            for block in rowList {
                if let local = localBlock[block] {
                    plan.rowBlocks.append(local)
                } else {
                    localBlock[block] = Int32(blocks.count)
                    plan.rowBlocks.append(Int32(blocks.count))
                    blocks.append(block)
                }
            }
            plan.rowBlockStart.append(Int32(plan.rowBlocks.count))
            for x in rowList.indices {
                for y in x..<rowList.count {
                    let key = rowList[x] * nb + rowList[y]
                    if let local = localPair[key] {
                        plan.rowPairs.append(local)
                    } else {
                        localPair[key] = Int32(pairs.count)
                        plan.rowPairs.append(Int32(pairs.count))
                        pairs.append((rowList[x], rowList[y]))
                    }
                }
            }
            plan.rowPairStart.append(Int32(plan.rowPairs.count))
        }
        // The segment's array: pairs, blocks × [X y], [X y]'[X y], Σ devres; the pairs in the
        // order of their place in Z'Z (column block, then row block) and the blocks in theirs, so
        // that adding the array to the total sweeps through it (at 10^7 rows the total is 0.2 GB,
        // and a segment's 10^5 entries in the order the rows first met them missed the cache
        // each). Each entry of the total gets one value a segment, so the order changes no bits.
        plan.pairStart = [Int](repeating: 0, count: pairs.count)
        for local in pairs.indices.sorted(by: { (pairs[$0].1, pairs[$0].0) < (pairs[$1].1, pairs[$1].0) }) {
            let (a, b) = pairs[local]
            plan.pairStart[local] = plan.target.count
            let pa = dims[a], pb = dims[b]
            for c in 0..<pb {
                for r in 0..<pa { plan.target.append(a == b && r > c ? -1 : zzPosition(a, b, row: r, column: c)) }
            }
        }
        let q = pattern.randomEffectsCount
        plan.blockStart = [Int](repeating: 0, count: blocks.count)
        plan.blockDims = blocks.map { dims[$0] }
        for local in blocks.indices.sorted(by: { blocks[$0] < blocks[$1] }) {
            let a = blocks[local]
            plan.blockStart[local] = plan.target.count
            for j in 0..<p1 { for r in 0..<dims[a] { plan.target.append(zxyBase + starts[a] + r + j * q) } }
        }
        plan.xyxyStart = plan.target.count
        for j in 0..<p1 { for r in 0..<p1 { plan.target.append(r <= j ? xyxyBase + r + j * p1 : -1) } }
        plan.target.append(devianceIndex)
        return plan
    }

    /// One segment's sums: its rows (unweighted), √W and the scaled working response √W ỹ per
    /// row, and its Σ devres. The array is laid out as its plan's `target`.
    func segmentSums(_ plan: Plan, rows chunk: ModelChunk, sqrtWeights: [Double], response: [Double], deviance: Double) -> [Double] {
        var sums = [Double](repeating: 0, count: plan.count)
        let p = p1 - 1, n = chunk.count
        guard n > 0 else { return sums }   // a segment of incomplete rows (its arrays may have no storage)
        // Each membership's term, dimension and values (w z), looked up once: row i's membership
        // c of term k has weight weights[k][i M_k + c] and covariates z[k][(i M_k + c)…].
        let termCount = chunk.terms.count
        let memberships = chunk.terms.map(\.memberships), termDims = pattern.terms.map(\.dimension)
        let maxRowValues = zip(memberships, termDims).reduce(0) { $0 + $1.0 * $1.1 }
        let scalar = termDims.allSatisfy { $0 == 1 }
        var scratch = [Double](repeating: 0, count: max(maxRowValues, 1))
        var offsets = [Int](repeating: 0, count: memberships.reduce(0, +) + 1)
        var xy = [Double](repeating: 0, count: p1)
        let weightPointers = chunk.terms.map { t in t.weights.withUnsafeBufferPointer { $0.baseAddress! } }
        let zPointers = chunk.terms.map { t in t.z.withUnsafeBufferPointer { $0.baseAddress! } }
        withExtendedLifetime(chunk) {
        sums.withUnsafeMutableBufferPointer { out in
        scratch.withUnsafeMutableBufferPointer { v in
        offsets.withUnsafeMutableBufferPointer { off in
        xy.withUnsafeMutableBufferPointer { xy in
        chunk.x.withUnsafeBufferPointer { x in
        plan.rowBlockStart.withUnsafeBufferPointer { rowBlockStart in
        plan.rowBlocks.withUnsafeBufferPointer { rowBlocks in
        plan.membershipBlock.withUnsafeBufferPointer { membershipBlock in
        plan.rowPairStart.withUnsafeBufferPointer { rowPairStart in
        plan.rowPairs.withUnsafeBufferPointer { rowPairs in
        plan.pairStart.withUnsafeBufferPointer { pairStart in
        plan.blockStart.withUnsafeBufferPointer { blockStart in
        plan.blockDims.withUnsafeBufferPointer { blockDims in
            var membership = 0
            let xb = plan.xyxyStart
            for i in 0..<n {
                let si = sqrtWeights[i]
                for j in 0..<p { xy[j] = x[i * p + j] * si }
                xy[p] = response[i]
                let u0 = Int(rowBlockStart[i]), u = Int(rowBlockStart[i + 1]) - u0
                if scalar {
                    // Every block 1 × 1 (the same products, in the same order, as below).
                    for x in 0..<u { v[x] = 0 }
                    for k in 0..<termCount {
                        let m = memberships[k], w = weightPointers[k], z = zPointers[k]
                        for mi in 0..<m {
                            let slot = membershipBlock[membership]
                            membership += 1
                            if slot < 0 { continue }
                            v[Int(slot)] += w[i * m + mi] * si * z[i]
                        }
                    }
                    var pp = Int(rowPairStart[i])
                    for x in 0..<u {
                        let vx = v[x]
                        for y in x..<u {
                            out[pairStart[Int(rowPairs[pp])]] += vx * v[y]
                            pp += 1
                        }
                        let base = blockStart[Int(rowBlocks[u0 + x])]
                        for j in 0..<p1 { out[base + j] += vx * xy[j] }
                    }
                    for j in 0..<p1 {
                        let xj = xy[j]
                        if xj == 0 { continue }
                        for r in 0...j { out[xb + r + j * p1] += xy[r] * xj }
                    }
                    continue
                }
                // Each distinct block's values: Σ over its memberships of w z √W.
                var total = 0
                for x in 0..<u {
                    off[x] = total
                    total += blockDims[Int(rowBlocks[u0 + x])]
                }
                off[u] = total
                for t in 0..<total { v[t] = 0 }
                for k in 0..<termCount {
                    let m = memberships[k], pk = termDims[k], w = weightPointers[k], z = zPointers[k]
                    for mi in 0..<m {
                        let slot = membershipBlock[membership]
                        membership += 1
                        if slot < 0 { continue }
                        let wi = w[i * m + mi] * si, o = off[Int(slot)]
                        for t in 0..<pk { v[o + t] += wi * z[i * pk + t] }
                    }
                }
                // Pairs (x ≤ y), then each block with [X y], then [X y]'[X y].
                var pp = Int(rowPairStart[i])
                for x in 0..<u {
                    let ox = off[x], px = off[x + 1] - ox
                    for y in x..<u {
                        let base = pairStart[Int(rowPairs[pp])]
                        pp += 1
                        let oy = off[y], py = off[y + 1] - oy
                        for c in 0..<py {
                            let vc = v[oy + c]
                            for r in 0..<px { out[base + r + c * px] += v[ox + r] * vc }
                        }
                    }
                    let base = blockStart[Int(rowBlocks[u0 + x])]
                    for j in 0..<p1 {
                        let xj = xy[j]
                        for r in 0..<px { out[base + r + j * px] += v[ox + r] * xj }
                    }
                }
                for j in 0..<p1 {
                    let xj = xy[j]
                    if xj == 0 { continue }
                    for r in 0...j { out[xb + r + j * p1] += xy[r] * xj }
                }
            }
        }}}}}}}}}}}}}}
        sums[plan.count - 1] = deviance
        return sums
    }

    /// The total of the segments' sums (`segmentSums`), folded in file order over every rank:
    /// rank 0 adds each of its segments as soon as its predecessors are in, then the other
    /// ranks' in rank order; the others keep theirs and send them with their plans' targets.
    final class Fold: @unchecked Sendable {
        private let owner: WorkingCrossProducts
        private let communicator: Communicator
        private var total: [Double]
        private var kept: [(sums: [Double], target: [Int])]
        private let turnstile = SegmentTurnstile()
        private let lock = NSLock()

        init(_ owner: WorkingCrossProducts, segments: Int, communicator: Communicator) {
            self.owner = owner
            self.communicator = communicator
            total = [Double](repeating: 0, count: owner.totalCount)
            kept = [([Double], [Int])](repeating: ([], []), count: communicator.isRoot ? 0 : segments)
        }

        /// Segment s's sums, laid out by `plan` (from any thread, in any order).
        func add(_ s: Int, _ sums: [Double], plan: Plan) {
            if communicator.isRoot {
                turnstile.pass(s) { WorkingCrossProducts.add(sums, targets: plan.target, to: &total) }
            } else {
                lock.lock()
                kept[s] = (sums, plan.target)
                lock.unlock()
            }
        }

        /// Segment s added nothing (it failed: the pass is abandoned on every rank).
        func skip(_ s: Int) { if communicator.isRoot { turnstile.skip(s) } }

        /// Every rank's total: the cross-products and Σ devres.
        func finish() -> (CrossProducts, Double) {
            if communicator.size > 1 {
                let tag = 12
                if communicator.isRoot {
                    for r in 1..<communicator.size {
                        var reader = ByteReader(communicator.receive(from: r, tag: tag).bytes)
                        for _ in 0..<reader.int() {
                            let sums = reader.doubles()
                            WorkingCrossProducts.add(sums, targets: reader.ints(), to: &total)
                        }
                    }
                    var writer = ByteWriter()
                    writer.doubles(total)
                    _ = communicator.broadcast(writer.bytes, root: 0)
                } else {
                    var writer = ByteWriter()
                    writer.int(kept.count)
                    for part in kept { writer.doubles(part.sums); writer.ints(part.target) }
                    communicator.send(writer.bytes, to: 0, tag: tag)
                    var reader = ByteReader(communicator.broadcast([], root: 0))
                    total = reader.doubles()
                }
            }
            return (owner.crossProducts(total), total[owner.devianceIndex])
        }
    }

    private static func add(_ part: [Double], targets: [Int], to total: inout [Double]) {
        for k in part.indices where targets[k] >= 0 { total[targets[k]] += part[k] }
    }

    /// The total laid out as `CrossProducts` on the pattern ([X y]'[X y] mirrored).
    private func crossProducts(_ total: [Double]) -> CrossProducts {
        let cp = pattern, q = cp.randomEffectsCount
        var xyxy = Array(total[xyxyBase..<(xyxyBase + p1 * p1)])
        for j in 0..<p1 { for r in 0..<j { xyxy[j + r * p1] = xyxy[r + j * p1] } }
        return CrossProducts(rows: cp.rows, terms: cp.terms, fixedNames: cp.fixedNames, blockStart: cp.blockStart, blockTerm: cp.blockTerm,
                             blockRowStarts: cp.blockRowStarts, blockRows: cp.blockRows, zzColumnStarts: cp.zzColumnStarts,
                             zzRowIndices: cp.zzRowIndices, zzValues: Array(total[0..<zxyBase]),
                             zxy: Array(total[zxyBase..<(zxyBase + q * p1)]), xyxy: xyxy, logWeights: 0)
    }
}
