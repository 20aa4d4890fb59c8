import CCHOLMOD
import Foundation

/// The Cholesky factor of A = Λ'Z'ZΛ + I when the first term's levels are independent and what
/// remains fills in: a block-diagonal part, a sparse coupling, and one dense Schur complement.
///
/// With the first term (the one with the most levels) first, A = [A₁₁ A₂₁'; A₂₁ A₂₂] where A₁₁
/// is block-diagonal (one p₁ × p₁ block per level: no row belongs to two levels of one factor).
/// Then L = [L₁₁ 0; W L_S] with
///
///     L₁₁ = chol of each block,   W = A₂₁ L₁₁⁻ᵀ (the pattern of A₂₁),   L_S L_S' = S = A₂₂ − W W'.
///
/// On crossed designs S is dense (every level of B meets many levels of A): it is formed here
/// by scattering each level's W rows into a dense matrix on all cores or, when W itself is
/// dense enough to make that dearer, by BLAS `dsyrk` on panels of W gathered dense; then it is
/// factored by LAPACK's `dpotrf` in fixed tiles on all cores (`TiledCholesky`, which keeps the
/// result independent of the thread count). This is what CHOLMOD's supernodal factor does in the natural order,
/// without its per-supernode assembly for thousands of tiny supernodes.
///
/// Use `BlockedCholesky(crossProducts)`: nil when the structure does not hold (one term, a
/// multiple-membership or otherwise coupled first term, a remainder larger than
/// `largestDense` or sparser than `smallestDensity`), and CHOLMOD is used instead.
final class BlockedCholesky: SymmetricFactorization {
    /// The largest dense Schur complement (its order): 8 · 8000² bytes = 512 MB.
    static let largestDense = 8_000
    /// The least fraction of the lower triangle of S that must be nonzero for the dense form to pay.
    static let smallestDensity = 0.1

    let dimension: Int
    /// Columns of the first term, the order of S, the first term's block size and level count.
    private let q1: Int, n2: Int, p1: Int, levels1: Int
    private let columnStarts: [Int]
    private let rowIndices: [Int]
    let values: UnsafeMutableBufferPointer<Double>
    /// For level j of the first term, entries `entryStart[j] ..< entryStart[j + 1]`: column
    /// `entryColumn[e]` of S with A's p₁ values of (level j, that column) at `entryPosition[e]`.
    private let entryStart: [Int]
    private let entryColumn: [Int32]
    private let entryPosition: [Int]
    /// Level j's entries in column tile t of S (columns t·`schurTile` ..< (t + 1)·`schurTile`) are
    /// `tileEntry[j·(tiles + 1) + t] ..< tileEntry[j·(tiles + 1) + t + 1]` (a level's entries
    /// are in increasing column order).
    private let tileEntry: [Int]
    private let tiles: Int
    /// Columns of S per tile of the scattered formation and selected inverse. Each level costs a
    /// fixed overhead per pair of tiles it has entries in, so the tiles are large: at 1,024 (a tile
    /// 8 MB, in the L3 cache; the accesses within it are independent and overlap) against 256
    /// (512 KB, in L2), crossed-binary 10^6 (B 2,000 levels, about 100 entries a level) fits in
    /// 32.1 s against 34.1 s, the Gaussian crossed 10^6 in 1.38 s against 1.50 s; crossed 10^7
    /// the same (17.2 s, 17.6 s); 128 was slower still (40.8 s).
    static let schurTile = 1024
    /// W, p₁ values per entry; the blocks L_j (p₁ × p₁ lower, column-major); L_S (n2 × n2, lower).
    private var w: [Double]
    private var blocks: [Double]
    private let s: UnsafeMutableBufferPointer<Double>
    /// When W is dense enough, W W' is computed by BLAS (dsyrk, `TiledCholesky.subtract`) on W gathered into dense
    /// n2 × `denseBatch` panels, rather than scattered entry by entry.
    private let gatherDense: Bool
    private static let denseBatch = 1_024
    private var logDet = 0.0
    /// C = S⁻¹ and its X = L_S⁻¹, kept from one gradient to the next (InstEval: 10.7 MB each,
    /// whose pages were otherwise mapped afresh three times a fit).
    private var inverse: [Double] = []
    private var inverseWorkspace: [Double] = []
    private let threads = ProcessInfo.processInfo.activeProcessorCount

    /// How S −= W W' is formed: chosen by estimated cost, or forced (tests compare the two).
    enum Formation { case automatic, scatter, gather }

    /// What the blocked factorisation of some cross-products would cost, known in closed form
    /// before anything of its size is allocated (`cost(_:)`).
    struct Cost {
        /// n2, the order of the dense Schur complement S.
        let schurOrder: Int
        /// Σ_j Σ_t (p₁ − t + m_j)² + Σ_k k²: CHOLMOD's flop count (Σ of squared column counts) for
        /// this factor, m_j the columns of S that level j of the first term meets: the formation
        /// of S (about Σ_j m_j² p₁) and dpotrf's n2³/3.
        let flops: Double
        /// The bytes the factorisation holds: A's values, S (n2² doubles), W and the level blocks,
        /// their indices, and the dense panel when S is formed by dsyrk.
        let bytes: Double
        /// The bytes `inverseOnPattern` (the gradient's selected inverse) adds: C = S⁻¹, L_S⁻¹ (on the
        /// way to C) and the output.
        let inverseBytes: Double
        /// The entries S fills in (beyond A₂₂'s pattern) by the pair of terms of their row and
        /// column, `[a][b]` with a ≤ b (row and column 0, the first term, are empty).
        let fillByTermPair: [[Double]]
    }

    /// The cost of the blocked factorisation of `cp`; nil where it does not apply (one term, or a
    /// first term whose levels share rows, as `mm()` levels do). Unlike `init`, no cap on n2 and
    /// no density test: a sparse S is costed as dense, and loses to CHOLMOD's cheaper factor.
    static func cost(_ cp: CrossProducts) -> Cost? {
        guard cp.terms.count >= 2 else { return nil }
        let first = cp.terms[0]
        let q1 = first.columns, p1 = first.dimension, levels = first.levels.count, q = cp.randomEffectsCount, n2 = q - q1
        guard n2 >= 1 else { return nil }
        for b in 0..<levels where cp.blockRowStarts[b + 1] - cp.blockRowStarts[b] != 1 { return nil }
        let cs = cp.zzColumnStarts, ri = cp.zzRowIndices, rowLimit = Int32(q1)
        var m = [Int](repeating: 0, count: levels)
        var termOf = [Int](repeating: 0, count: q)
        for (k, t) in cp.terms.enumerated() { for c in t.offset..<(t.offset + t.columns) { termOf[c] = k } }
        let terms = cp.terms.count
        var pattern = [[Double]](repeating: [Double](repeating: 0, count: terms), count: terms)
        for c in q1..<q {
            var k = cs[c]
            while k < cs[c + 1], ri[k] < rowLimit { m[Int(ri[k]) / p1] += 1; k += p1 }
            while k < cs[c + 1] { let a = termOf[Int(ri[k])], b = termOf[c]; pattern[min(a, b)][max(a, b)] += 1; k += 1 }
        }
        var flops = 0.0, updates = 0.0, entries = 0.0
        let p = Double(p1)
        for j in 0..<levels {
            let mj = Double(m[j])
            entries += mj
            updates += mj * (mj + 1) / 2 * p * p
            for t in 0..<p1 { let c = Double(p1 - t) + mj; flops += c * c }
        }
        let n = Double(n2)
        flops += n * (n + 1) * (2 * n + 1) / 6
        let gather = n * n * Double(q1) / 4e10 < updates * 2e-9
        let panel = gather ? 8 * n * Double(min(max(1, denseBatch / p1) * p1, q1)) : 0
        let nnz = Double(ri.count)
        let bytes = 8 * nnz + 8 * n * n + entries * (8 * p + 12) + 8 * Double(levels) * (p * p + 1) + panel
        var fill = [[Double]](repeating: [Double](repeating: 0, count: terms), count: terms)
        for a in 1..<terms {
            for b in a..<terms {
                let ca = Double(cp.terms[a].columns), cb = Double(cp.terms[b].columns)
                fill[a][b] = max(0, (a == b ? ca * (ca + 1) / 2 : ca * cb) - pattern[a][b])
            }
        }
        return Cost(schurOrder: n2, flops: flops, bytes: bytes, inverseBytes: 16 * n * n + 8 * nnz, fillByTermPair: fill)
    }

    /// `checked`: refuse (nil) a remainder larger than `largestDense` or sparser than
    /// `smallestDensity`, as the `natural` ordering does; the `auto` choice has costed it instead.
    init?(_ cp: CrossProducts, formation: Formation = .automatic, checked: Bool = true) {
        guard cp.terms.count >= 2 else { return nil }
        let first = cp.terms[0]
        q1 = first.columns
        p1 = first.dimension
        levels1 = first.levels.count
        dimension = cp.randomEffectsCount
        n2 = dimension - q1
        guard n2 >= 1, !checked || n2 <= Self.largestDense else { return nil }
        // The first term's blocks are coupled with nothing before them (it has no partners).
        for b in 0..<levels1 where cp.blockRowStarts[b + 1] - cp.blockRowStarts[b] != 1 { return nil }
        columnStarts = cp.zzColumnStarts
        rowIndices = cp.zzRowIndices.map(Int.init)
        // Entries of A₂₁ by level: column c of S has the level's p₁ rows contiguous.
        var counts = [Int](repeating: 0, count: levels1 + 1)
        for c in q1..<dimension {
            var k = columnStarts[c]
            while k < columnStarts[c + 1], rowIndices[k] < q1 { counts[rowIndices[k] / p1 + 1] += 1; k += p1 }
        }
        for j in 0..<levels1 { counts[j + 1] += counts[j] }
        entryStart = counts
        var next = counts
        var column = [Int32](repeating: 0, count: counts[levels1])
        var position = [Int](repeating: 0, count: counts[levels1])
        for c in q1..<dimension {
            var k = columnStarts[c]
            while k < columnStarts[c + 1], rowIndices[k] < q1 {
                let j = rowIndices[k] / p1
                column[next[j]] = Int32(c - q1)
                position[next[j]] = k
                next[j] += 1
                k += p1
            }
        }
        entryColumn = column
        entryPosition = position
        tiles = (n2 + Self.schurTile - 1) / Self.schurTile
        var boundaries = [Int](repeating: 0, count: levels1 * (tiles + 1))
        for j in 0..<levels1 {
            var e = counts[j]
            for t in 0...tiles {
                while e < counts[j + 1], Int(column[e]) < t * Self.schurTile { e += 1 }
                boundaries[j * (tiles + 1) + t] = e
            }
        }
        tileEntry = boundaries
        guard !checked || Self.schurIsDense(n2: n2, q1: q1, entryStart: counts, entryColumn: column,
                                columnStarts: columnStarts, rowIndices: rowIndices) else { return nil }
        // Scattering costs about 2 ns per update of S; dsyrk about n2² q1 / 4·10¹⁰ s (measured here).
        var updates = 0.0
        for j in 0..<levels1 { let m = Double(counts[j + 1] - counts[j]); updates += m * (m + 1) / 2 * Double(p1 * p1) }
        switch formation {
        case .automatic: gatherDense = Double(n2) * Double(n2) * Double(q1) / 4e10 < updates * 2e-9
        case .scatter: gatherDense = false
        case .gather: gatherDense = true
        }
        values = .allocate(capacity: rowIndices.count)
        values.initialize(repeating: 0)
        s = .allocate(capacity: n2 * n2)
        s.initialize(repeating: 0)
        w = [Double](repeating: 0, count: column.count * p1)
        blocks = [Double](repeating: 0, count: levels1 * p1 * p1)
    }

    deinit {
        values.deallocate()
        s.deallocate()
    }

    /// Whether at least `smallestDensity` of S's lower triangle is in the pattern of
    /// A₂₂ ∪ ⋃ⱼ (rows of level j)²; stops counting once it is.
    private static func schurIsDense(n2: Int, q1: Int, entryStart: [Int], entryColumn: [Int32],
                                     columnStarts: [Int], rowIndices: [Int]) -> Bool {
        let needed = Int((smallestDensity * Double(n2) * Double(n2 + 1) / 2).rounded(.up))
        var seen = [UInt64](repeating: 0, count: (n2 * n2 + 63) / 64)
        var count = 0
        func mark(_ i: Int, _ k: Int) {
            let bit = i + k * n2
            let word = bit >> 6, mask = UInt64(1) << UInt64(bit & 63)
            if seen[word] & mask == 0 { seen[word] |= mask; count += 1 }
        }
        for c in 0..<n2 {
            for k in columnStarts[q1 + c]..<columnStarts[q1 + c + 1] where rowIndices[k] >= q1 { mark(c, rowIndices[k] - q1) }
        }
        for j in 0..<(entryStart.count - 1) {
            if count >= needed { return true }
            for v in entryStart[j]..<entryStart[j + 1] {
                for u in v..<entryStart[j + 1] { mark(Int(entryColumn[u]), Int(entryColumn[v])) }
            }
        }
        return count >= needed
    }

    func factorize() -> Bool {
        let p = p1
        // L_j: the first term's diagonal blocks (column c of the block: its rows 0...c, no partners),
        // then W: each entry's row of A₂₁ times L_j⁻ᵀ, i.e. L_j w = a. Levels in ranges on the
        // threads; log|L_j|² term by term into `diagonalLogs`, added in level order below.
        let levels = levels1
        var diagonalLogs = [Double](repeating: 0, count: levels * p)
        let failed = ManagedFlag()
        let ranges = Self.levelRanges(levels, threads: threads)
        blocks.withUnsafeMutableBufferPointer { blocks in
            w.withUnsafeMutableBufferPointer { w in
                diagonalLogs.withUnsafeMutableBufferPointer { logs in
                    let blocks = blocks, w = w, logs = logs
                    TiledCholesky.parallel(0..<ranges.count, threads: threads) { r in
                        for j in ranges[r] {
                            let base = j * p * p
                            for c in 0..<p {
                                let k = columnStarts[j * p + c]
                                for r in 0...c { blocks[base + c + r * p] = values[k + r] }   // lower: (c, r)
                            }
                            guard DenseCholesky.lowerInPlace(blocks, offset: base, order: p) else { failed.set(); return }
                            for t in 0..<p { logs[j * p + t] = 2 * log(blocks[base + t + t * p]) }
                            let l = UnsafePointer(blocks.baseAddress! + base)
                            for e in entryStart[j]..<entryStart[j + 1] {
                                let row = w.baseAddress! + e * p
                                for t in 0..<p { row[t] = values[entryPosition[e] + t] }
                                Self.solveLower(l, row, order: p)
                            }
                        }
                    }
                }
            }
        }
        guard !failed.isSet else { return false }
        var logDet = diagonalLogs.reduce(0, +)
        formSchurComplement()
        guard TiledCholesky.factor(s.baseAddress!, order: n2, threads: threads) else { return false }
        for i in 0..<n2 { logDet += 2 * log(s[i + i * n2]) }
        self.logDet = logDet
        return logDet.isFinite
    }

    /// S = A₂₂ − W W' (lower triangle), columns shared out among the threads.
    private func formSchurComplement() {
        let n2 = self.n2, q1 = self.q1, p = p1, s = self.s
        for c in 0..<n2 {
            let col = s.baseAddress! + c * n2
            col.update(repeating: 0, count: n2)   // only i ≥ c is used; zeroing the column is simplest
            for k in columnStarts[q1 + c]..<columnStarts[q1 + c + 1] where rowIndices[k] >= q1 {
                // Upper entry (r, c), r ≤ c, of A₂₂ is S(c, r).
                s[c + (rowIndices[k] - q1) * n2] = values[k]
            }
        }
        if gatherDense { subtractGathered(); return }
        // Tile by tile of S (each tile on one thread, so each entry gets its levels' updates in
        // level order whatever the threads), and level by level within a tile, so that the
        // scattered writes stay in a tile that fits in cache (at n2 = 2000, S is 32 MB).
        let tiles = self.tiles, levels = levels1, stride = tiles + 1
        var pairs: [(row: Int, column: Int)] = []
        for tc in 0..<tiles { for tr in tc..<tiles { pairs.append((tr, tc)) } }
        tileEntry.withUnsafeBufferPointer { bounds in
            w.withUnsafeBufferPointer { w in
                entryColumn.withUnsafeBufferPointer { column in
                    let bounds = bounds.baseAddress!, w = w.baseAddress!, column = column.baseAddress!, sBase = s.baseAddress!
                    TiledCholesky.parallel(0..<pairs.count, threads: threads) { k in
                        let (tr, tc) = pairs[k]
                        for j in 0..<levels {
                            let b = bounds + j * stride
                            let vs = b[tc], ve = b[tc + 1], ue = b[tr + 1]
                            guard vs < ve, b[tr] < ue else { continue }
                            var first = vs
                            if p == 1 {
                                // Four columns at a time, sharing each row's index and value:
                                // every entry still gets one update per level, in level order.
                                first = Self.subtractFourColumns(w: w, column: column, s: sBase, n2: n2, from: vs, to: ve,
                                                                 rows: tr == tc ? nil : b[tr], end: ue)
                            }
                            for v in first..<ve {
                                let target = sBase + Int(column[v]) * n2
                                let us = tr == tc ? v : b[tr]
                                switch p {
                                case 1:
                                    let wv = w[v]
                                    for u in us..<ue { target[Int(column[u])] -= w[u] * wv }
                                case 2:
                                    let a = w[2 * v], c = w[2 * v + 1]
                                    for u in us..<ue { target[Int(column[u])] -= w[2 * u] * a + w[2 * u + 1] * c }
                                default:
                                    for u in us..<ue {
                                        var dot = 0.0
                                        for t in 0..<p { dot += w[u * p + t] * w[v * p + t] }
                                        target[Int(column[u])] -= dot
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The scattered update of S by one level's entries `from ..< to` of a column tile, four
    /// columns at a time (p₁ = 1): S(col_u, col_v) −= w_u w_v for the rows u from `rows` (a tile
    /// below the diagonal) or from v (the diagonal tile, `rows` nil) to `end`. Returns the first
    /// column entry left (fewer than four remain).
    @inline(__always)
    private static func subtractFourColumns(w: UnsafePointer<Double>, column: UnsafePointer<Int32>, s: UnsafeMutablePointer<Double>,
                                            n2: Int, from: Int, to: Int, rows: Int?, end: Int) -> Int {
        var v = from
        while v + 4 <= to {
            let t0 = s + Int(column[v]) * n2, t1 = s + Int(column[v + 1]) * n2
            let t2 = s + Int(column[v + 2]) * n2, t3 = s + Int(column[v + 3]) * n2
            let w0 = w[v], w1 = w[v + 1], w2 = w[v + 2], w3 = w[v + 3]
            var u = rows ?? v
            if rows == nil {
                // The triangle of the four columns' own rows.
                let c0 = Int(column[v]), c1 = Int(column[v + 1]), c2 = Int(column[v + 2]), c3 = Int(column[v + 3])
                t0[c0] -= w0 * w0
                t0[c1] -= w1 * w0; t1[c1] -= w1 * w1
                t0[c2] -= w2 * w0; t1[c2] -= w2 * w1; t2[c2] -= w2 * w2
                t0[c3] -= w3 * w0; t1[c3] -= w3 * w1; t2[c3] -= w3 * w2; t3[c3] -= w3 * w3
                u = v + 4
            }
            while u < end {
                let c = Int(column[u]), x = w[u]
                t0[c] -= x * w0
                t1[c] -= x * w1
                t2[c] -= x * w2
                t3[c] -= x * w3
                u += 1
            }
            v += 4
        }
        return v
    }

    /// S −= W W' by dsyrk on panels of W's columns (levels in order), gathered dense.
    private func subtractGathered() {
        forEachGatheredPanel(solved: false) { _, panel, k in
            TiledCholesky.subtract(panel: panel, columns: k, from: s.baseAddress!, order: n2, threads: threads)
        }
    }

    /// Calls `body` for each panel of consecutive levels of the first term (`denseBatch / p₁`
    /// of them), with the panel an n2 × k dense matrix (k = its levels × p₁) holding each entry e
    /// of level j at row col_e, columns (j − first)·p₁ + t: W's p₁ values, or V's
    /// (v_e = L_j⁻ᵀ w_e') when `solved`.
    private func forEachGatheredPanel(solved: Bool, _ body: (_ levels: Range<Int>, _ panel: UnsafePointer<Double>, _ k: Int) -> Void) {
        let p = p1, n2 = self.n2
        let levelsPerPanel = max(1, Self.denseBatch / p)
        var panel = [Double](repeating: 0, count: n2 * levelsPerPanel * p)
        var first = 0
        panel.withUnsafeMutableBufferPointer { panel in
            let panel = panel
            while first < levels1 {
                let last = min(first + levelsPerPanel, levels1)
                let k = (last - first) * p
                // Each thread zeroes and fills the columns of its range of the panel's levels
                // (at 10^7 rows the panel is 16 MB, 39% of it filled: built on one thread, it
                // left the other core idle for a tenth of the fit).
                let ranges = Self.levelRanges(last - first, threads: threads)
                TiledCholesky.parallel(0..<ranges.count, threads: threads) { r in
                    let range = ranges[r]
                    (panel.baseAddress! + range.lowerBound * p * n2).update(repeating: 0, count: range.count * p * n2)
                    var values = [Double](repeating: 0, count: p)
                    for local in range {
                        let j = first + local
                        for e in entryStart[j]..<entryStart[j + 1] {
                            for t in 0..<p { values[t] = w[e * p + t] }
                            if solved {
                                blocks.withUnsafeBufferPointer { blocks in
                                    values.withUnsafeMutableBufferPointer {
                                        Self.solveLowerTransposed(blocks.baseAddress! + j * p * p, $0.baseAddress!, order: p)
                                    }
                                }
                            }
                            let row = Int(entryColumn[e])
                            for t in 0..<p { panel[row + (local * p + t) * n2] = values[t] }
                        }
                    }
                }
                body(first..<last, UnsafePointer(panel.baseAddress!), k)
                first = last
            }
        }
    }

    /// `count` levels cut into ranges for `threads` threads (a few per thread, for balance).
    private static func levelRanges(_ count: Int, threads: Int) -> [Range<Int>] {
        let pieces = max(1, min(count, 4 * threads))
        return (0..<pieces).map { (count * $0 / pieces)..<(count * ($0 + 1) / pieces) }
    }

    func logDeterminant() -> Double { logDet }

    /// b ← L⁻¹ b for a dense q × `columns` b.
    func forwardSolve(_ b: inout [Double], columns: Int) {
        let q = dimension, p = p1, q1 = self.q1
        withPointers(&b) { b, blocks, w, start, column in
            for col in 0..<columns {
                let o = b + col * q, o2 = o + q1
                for j in 0..<levels1 {
                    let r = o + j * p
                    Self.solveLower(blocks + j * p * p, r, order: p)
                    if p == 1 {
                        let x = r[0]
                        for e in start[j]..<start[j + 1] { o2[Int(column[e])] -= w[e] * x }
                    } else {
                        for e in start[j]..<start[j + 1] {
                            var dot = 0.0
                            for t in 0..<p { dot += w[e * p + t] * r[t] }
                            o2[Int(column[e])] -= dot
                        }
                    }
                }
            }
        }
        triangularSolve(&b, columns: columns, transpose: false)
    }

    /// b ← L⁻ᵀ b for a dense q × `columns` b.
    func backwardSolve(_ b: inout [Double], columns: Int) {
        let q = dimension, p = p1, q1 = self.q1
        triangularSolve(&b, columns: columns, transpose: true)
        withPointers(&b) { b, blocks, w, start, column in
            for col in 0..<columns {
                let o = b + col * q, o2 = o + q1
                for j in 0..<levels1 {
                    let r = o + j * p
                    for e in start[j]..<start[j + 1] {
                        let x = o2[Int(column[e])]
                        for t in 0..<p { r[t] -= w[e * p + t] * x }
                    }
                    Self.solveLowerTransposed(blocks + j * p * p, r, order: p)
                }
            }
        }
    }

    /// x ← L⁻¹ x for a small lower-triangular L (column-major, `order` × `order`).
    @inline(__always)
    private static func solveLower(_ l: UnsafePointer<Double>, _ x: UnsafeMutablePointer<Double>, order p: Int) {
        for t in 0..<p {
            var sum = x[t]
            for u in 0..<t { sum -= l[t + u * p] * x[u] }
            x[t] = sum / l[t + t * p]
        }
    }

    /// x ← L⁻ᵀ x for a small lower-triangular L.
    @inline(__always)
    private static func solveLowerTransposed(_ l: UnsafePointer<Double>, _ x: UnsafeMutablePointer<Double>, order p: Int) {
        for t in stride(from: p - 1, through: 0, by: -1) {
            var sum = x[t]
            for u in (t + 1)..<max(t + 1, p) { sum -= l[u + t * p] * x[u] }
            x[t] = sum / l[t + t * p]
        }
    }

    /// The diagonal blocks of A⁻¹ in closed form. With L = [L₁₁ 0; W L_S] and C = S⁻¹ = (L_S L_S')⁻¹
    /// (`TiledCholesky.invert` on a copy of L_S), level j of the first term has the block
    /// L_j⁻ᵀ(I + W_j'CW_j)L_j⁻¹ (W_j: level j's rows of W), and the other columns' blocks are C's.
    func inverseDiagonalBlocks(starts: [Int], size: [Int]) -> [[Double]] {
        let n2 = self.n2, q1 = self.q1, p = p1
        let c = inverseOfSchurComplement()
        func cAt(_ i: Int, _ j: Int) -> Double { i >= j ? c[i + j * n2] : c[j + i * n2] }
        return zip(starts, size).map { start, size in
            if start >= q1 {
                var m = [Double](repeating: 0, count: size * size)
                for t in 0..<size { for u in 0..<size { m[u + t * size] = cAt(start - q1 + u, start - q1 + t) } }
                return m
            }
            precondition(size == p && start % p == 0, "blocks of the first term are its levels")
            let j = start / p
            // G = I + W_j' C W_j (p × p), then L_j⁻ᵀ G L_j⁻¹ column by column.
            var g = [Double](repeating: 0, count: p * p)
            for t in 0..<p { g[t + t * p] = 1 }
            for e in entryStart[j]..<entryStart[j + 1] {
                let ce = Int(entryColumn[e])
                for f in entryStart[j]..<entryStart[j + 1] {
                    let cef = cAt(ce, Int(entryColumn[f]))
                    for a in 0..<p { for b in 0..<p { g[a + b * p] += w[e * p + a] * cef * w[f * p + b] } }
                }
            }
            return blocks.withUnsafeBufferPointer { blocks in
                let l = blocks.baseAddress! + j * p * p
                g.withUnsafeMutableBufferPointer { g in
                    // G ← L⁻ᵀ G (columns), then (L⁻ᵀ (L⁻ᵀ G)')' = L⁻ᵀ G L⁻¹ by symmetry.
                    for col in 0..<p { Self.solveLowerTransposed(l, g.baseAddress! + col * p, order: p) }
                    for a in 0..<p { for b in 0..<a { (g[a + b * p], g[b + a * p]) = (g[b + a * p], g[a + b * p]) } }
                    for col in 0..<p { Self.solveLowerTransposed(l, g.baseAddress! + col * p, order: p) }
                }
                return g
            }
        }
    }

    /// A⁻¹ on the pattern of A. With L⁻¹ = [L₁₁⁻¹ 0; −L_S⁻¹WL₁₁⁻¹ L_S⁻¹] and C = S⁻¹:
    ///
    ///     A⁻¹₂₂ = C,   A⁻¹₂₁ = −C W L₁₁⁻¹,   A⁻¹_jj = L_j⁻ᵀL_j⁻¹ + V_j'CV_j   (V_j = W_j L_j⁻¹),
    ///
    /// and A⁻¹₂₁ is needed only where level j meets a column of S (its entries e): with
    /// h_f = Σ_e C[col_f, col_e] v_e, the entry (col_f, level j) is −h_f and V_j'CV_j = Σ_f v_f'h_f.
    /// The cost is about twice that of scattering the Schur complement (every pair of a level's
    /// entries is read in both orders), Σ_j m_j² p₁, plus the inverse of S (`TiledCholesky.invert`).
    func inverseOnPattern() -> [Double] {
        let n2 = self.n2, q1 = self.q1
        let c = inverseOfSchurComplement()
        var out = [Double](repeating: 0, count: rowIndices.count)
        for col in q1..<dimension {
            for k in columnStarts[col]..<columnStarts[col + 1] where rowIndices[k] >= q1 {
                out[k] = c[(rowIndices[k] - q1) + (col - q1) * n2]
            }
        }
        if gatherDense { inverseGathered(c, into: &out) } else { inverseScattered(c, into: &out) }
        return out
    }

    /// Entries of v and h held at once by `inverseScattered` (per batch of levels; 8 MB for p₁ = 2);
    /// tests make it small to cut a small design into many batches.
    var inverseBatch = 262_144

    /// The levels' entries of A⁻¹ by scattered reads of C (both triangles stored in `c`), for a
    /// batch of levels at a time: v_e = L_j⁻ᵀ w_e' for the batch, then h_f = Σ_e C[col_f, col_e] v_e
    /// row tile by row tile of C (each on one thread, each h_f summed over column tiles in order,
    /// so the result does not depend on the threads) with every level's entries in a tile done
    /// while the 512 KB tile stays in cache, then each level finished (`finishLevel`), rather than
    /// level by level over the whole of C (32 MB at n2 = 2000).
    private func inverseScattered(_ c: [Double], into out: inout [Double]) {
        let p = p1, n2 = self.n2, tiles = self.tiles, stride = tiles + 1
        var v = [Double](repeating: 0, count: min(inverseBatch, entryStart[levels1]) * p), h = v
        var first = 0
        while first < levels1 {
            // Levels first..<last: at least one, at most `inverseBatch` entries unless one level has more.
            var last = first + 1
            while last < levels1, entryStart[last + 1] - entryStart[first] <= inverseBatch { last += 1 }
            let base = entryStart[first], count = entryStart[last] - base
            if v.count < count * p { v = [Double](repeating: 0, count: count * p); h = v }
            let levels = first..<last
            c.withUnsafeBufferPointer { c in
                blocks.withUnsafeBufferPointer { blocks in
                    w.withUnsafeBufferPointer { w in
                        v.withUnsafeMutableBufferPointer { v in
                            h.withUnsafeMutableBufferPointer { h in
                                tileEntry.withUnsafeBufferPointer { bounds in
                                    entryColumn.withUnsafeBufferPointer { column in
                                        let c = c.baseAddress!, blocks = blocks.baseAddress!, w = w.baseAddress!
                                        let v = v.baseAddress! - base * p, h = h.baseAddress! - base * p
                                        let bounds = bounds.baseAddress!, column = column.baseAddress!
                                        TiledCholesky.parallel(levels, threads: threads) { j in
                                            let l = blocks + j * p * p
                                            for e in entryStart[j]..<entryStart[j + 1] {
                                                for t in 0..<p { v[e * p + t] = w[e * p + t]; h[e * p + t] = 0 }
                                                Self.solveLowerTransposed(l, v + e * p, order: p)
                                            }
                                        }
                                        TiledCholesky.parallel(0..<tiles, threads: threads) { tr in
                                            for tc in 0..<tiles {
                                                for j in levels {
                                                    let b = bounds + j * stride
                                                    let fs = b[tr], fe = b[tr + 1], es = b[tc], ee = b[tc + 1]
                                                    guard fs < fe, es < ee else { continue }
                                                    for e in es..<ee {
                                                        let ce = c + Int(column[e]) * n2
                                                        switch p {
                                                        case 1:
                                                            let ve = v[e]
                                                            for f in fs..<fe { h[f] += ce[Int(column[f])] * ve }
                                                        case 2:
                                                            let v0 = v[2 * e], v1 = v[2 * e + 1]
                                                            for f in fs..<fe {
                                                                let cfe = ce[Int(column[f])]
                                                                h[2 * f] += cfe * v0
                                                                h[2 * f + 1] += cfe * v1
                                                            }
                                                        default:
                                                            for f in fs..<fe {
                                                                let cfe = ce[Int(column[f])]
                                                                for a in 0..<p { h[f * p + a] += cfe * v[e * p + a] }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                                let vp = UnsafePointer(v.baseAddress! - base * p), hp = UnsafePointer(h.baseAddress! - base * p)
                                out.withUnsafeMutableBufferPointer { out in
                                        let blocks = blocks.baseAddress!, out = out.baseAddress!
                                        TiledCholesky.parallel(0..<threads, threads: threads) { part in
                                            var linv = [Double](repeating: 0, count: p * p)
                                            linv.withUnsafeMutableBufferPointer { linv in
                                                for j in Swift.stride(from: first + part, to: last, by: threads) {
                                                    let at = entryStart[j] * p
                                                    self.finishLevel(j, blocks: blocks, v: vp + at, h: hp + at, linv: linv.baseAddress!, out: out)
                                                }
                                            }
                                        }
                                }
                            }
                        }
                    }
                }
            }
            first = last
        }
    }

    /// Writes level j's entries of A⁻¹ from its v_e and h_f: −h_f at (col_f, level j), and the
    /// diagonal block L_j⁻ᵀL_j⁻¹ + Σ_f v_f h_f' (columns of L_j⁻ᵀ from unit vectors).
    private func finishLevel(_ j: Int, blocks: UnsafePointer<Double>, v: UnsafePointer<Double>, h: UnsafePointer<Double>,
                             linv: UnsafeMutablePointer<Double>, out: UnsafeMutablePointer<Double>) {
        let p = p1
        let l = blocks + j * p * p
        let first = entryStart[j], count = entryStart[j + 1] - first
        linv.update(repeating: 0, count: p * p)
        for col in 0..<p {
            linv[col + col * p] = 1
            Self.solveLowerTransposed(l, linv + col * p, order: p)
        }
        for col in (j * p)..<((j + 1) * p) {
            let b = col - j * p
            for k in columnStarts[col]..<columnStarts[col + 1] {
                let a = rowIndices[k] - j * p
                var sum = 0.0
                for t in 0..<p { sum += linv[a + t * p] * linv[b + t * p] }
                for f in 0..<count { sum += v[f * p + a] * h[f * p + b] }
                out[k] = sum
            }
        }
        for f in 0..<count {
            let at = entryPosition[first + f]
            for b in 0..<p { out[at + b] = -h[f * p + b] }
        }
    }

    /// The levels' entries of A⁻¹ when W is dense enough that the Schur complement is formed by
    /// BLAS (`gatherDense`): the v_e of a panel of levels gathered into a dense n2 × k matrix V,
    /// H = C V by dgemm in row tiles on the package's threads, and h_f read off H, instead of
    /// Σ_j m_j² scattered reads of C. `c` holds C in both triangles.
    private func inverseGathered(_ c: [Double], into out: inout [Double]) {
        let p = p1, n2 = self.n2
        let longest = (0..<levels1).map { entryStart[$0 + 1] - entryStart[$0] }.max() ?? 0
        var product = [Double](repeating: 0, count: n2 * max(1, Self.denseBatch / p) * p)
        var v = [Double](repeating: 0, count: max(1, longest * p)), h = v, linv = [Double](repeating: 0, count: p * p)
        c.withUnsafeBufferPointer { c in
            blocks.withUnsafeBufferPointer { blocks in
                out.withUnsafeMutableBufferPointer { out in
                    let c = c.baseAddress!, blocks = blocks.baseAddress!, out = out.baseAddress!
                    forEachGatheredPanel(solved: true) { levels, panel, k in
                        product.withUnsafeMutableBufferPointer { hd in
                            TiledCholesky.multiply(c, panel, columns: k, into: hd.baseAddress!, order: n2, threads: threads)
                        }
                        for j in levels {
                            let start = entryStart[j], count = entryStart[j + 1] - start
                            for f in 0..<count {
                                let at = Int(entryColumn[start + f]) + (j - levels.lowerBound) * p * n2
                                for t in 0..<p {
                                    v[f * p + t] = panel[at + t * n2]
                                    h[f * p + t] = product[at + t * n2]
                                }
                            }
                            v.withUnsafeBufferPointer { v in
                                h.withUnsafeBufferPointer { h in
                                    linv.withUnsafeMutableBufferPointer { linv in
                                        finishLevel(j, blocks: blocks, v: v.baseAddress!, h: h.baseAddress!, linv: linv.baseAddress!, out: out)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// C = S⁻¹ (both triangles, column-major n2 × n2) from L_S (`TiledCholesky.invert`).
    private func inverseOfSchurComplement() -> [Double] {
        if inverse.count != n2 * n2 {
            inverse = [Double](repeating: 0, count: n2 * n2)
            inverseWorkspace = inverse
        }
        for i in 0..<(n2 * n2) { inverse[i] = s[i] }
        TiledCholesky.invert(&inverse, order: n2, threads: threads, workspace: &inverseWorkspace)
        return inverse
    }

    private func withPointers(_ b: inout [Double],
                              _ body: (UnsafeMutablePointer<Double>, UnsafePointer<Double>, UnsafePointer<Double>,
                                       UnsafePointer<Int>, UnsafePointer<Int32>) -> Void) {
        b.withUnsafeMutableBufferPointer { b in
            blocks.withUnsafeBufferPointer { blocks in
                w.withUnsafeBufferPointer { w in
                    entryStart.withUnsafeBufferPointer { start in
                        entryColumn.withUnsafeBufferPointer { column in
                            body(b.baseAddress!, blocks.baseAddress!, w.baseAddress!, start.baseAddress!, column.baseAddress!)
                        }
                    }
                }
            }
        }
    }

    /// The rows q1 ..< q of b: L_S⁻¹ or L_S⁻ᵀ, by LAPACK's dtrsm.
    private func triangularSolve(_ b: inout [Double], columns: Int, transpose: Bool) {
        var side = CChar(UInt8(ascii: "L")), uplo = CChar(UInt8(ascii: "L"))
        var trans = CChar(UInt8(ascii: transpose ? "T" : "N")), diag = CChar(UInt8(ascii: "N"))
        var m = Int32(n2), n = Int32(columns), lda = Int32(n2), ldb = Int32(dimension)
        var one = 1.0
        b.withUnsafeMutableBufferPointer { buf in
            dtrsm_(&side, &uplo, &trans, &diag, &m, &n, &one, s.baseAddress!, &lda, buf.baseAddress! + q1, &ldb)
        }
    }
}
