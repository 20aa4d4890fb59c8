/// Everything a Gaussian linear mixed model needs from the data: A = [Z X y]'[Z X y] and n.
///
/// Built in one pass over the rows by `CrossProductAccumulator`; after that no step of the fit,
/// and no replicate or profile point, touches the rows again.
///
/// Z'Z is stored as its upper triangle in compressed-column form on a *block-complete* pattern:
/// Z's columns are grouped in blocks (one block = one level of one term, `p_k` columns), and
/// whenever two blocks share a row the whole `p_k × p_l` block of Z'Z is stored. Λ'Z'ZΛ then has
/// exactly the same pattern, so every θ refills the values of one fixed pattern in place.
public struct CrossProducts: Sendable {
    /// n: the number of rows used (complete cases).
    public let rows: Int
    /// The random-effects terms, in the order of Z's columns.
    public let terms: [RandomEffectsTerm]
    /// The names of X's columns.
    public let fixedNames: [String]

    /// The block pattern: block b covers Z columns `blockStart[b] ..< blockStart[b] + p` of term `blockTerm[b]`.
    let blockStart: [Int]
    let blockTerm: [Int]
    /// Column block b's row blocks (all `<= b`, ascending, ending with b itself) are
    /// `blockRows[blockRowStarts[b] ..< blockRowStarts[b + 1]]`.
    let blockRowStarts: [Int]
    let blockRows: [Int]

    /// Z'Z, upper triangle, compressed columns.
    let zzColumnStarts: [Int]
    let zzRowIndices: [Int]
    let zzValues: [Double]
    /// Z'X (q × p) and Z'y (q), column-major as one q × (p + 1) matrix [Z'X Z'y].
    let zxy: [Double]
    /// [X y]'[X y], (p + 1) × (p + 1) column-major, both triangles.
    let xyxy: [Double]

    /// q: the number of random effects.
    public var randomEffectsCount: Int { terms.reduce(0) { $0 + $1.columns } }
    /// p: the number of fixed-effect columns.
    public var fixedCount: Int { fixedNames.count }

    /// X'X entry (i, j).
    func xx(_ i: Int, _ j: Int) -> Double { xyxy[i + j * (fixedCount + 1)] }

    /// Keeps only the fixed-effect columns `keep` (in that order): used to drop aliased columns.
    func selectingFixed(_ keep: [Int]) -> CrossProducts {
        let p = fixedCount, q = randomEffectsCount
        let cols = keep + [p]
        var zxy2 = [Double](repeating: 0, count: q * cols.count)
        for (jNew, j) in cols.enumerated() {
            for i in 0..<q { zxy2[i + jNew * q] = zxy[i + j * q] }
        }
        var xyxy2 = [Double](repeating: 0, count: cols.count * cols.count)
        for (bNew, b) in cols.enumerated() {
            for (aNew, a) in cols.enumerated() { xyxy2[aNew + bNew * cols.count] = xyxy[a + b * (p + 1)] }
        }
        return CrossProducts(rows: rows, terms: terms, fixedNames: keep.map { fixedNames[$0] },
                             blockStart: blockStart, blockTerm: blockTerm,
                             blockRowStarts: blockRowStarts, blockRows: blockRows,
                             zzColumnStarts: zzColumnStarts, zzRowIndices: zzRowIndices, zzValues: zzValues,
                             zxy: zxy2, xyxy: xyxy2)
    }

    /// Z'Z as a dense symmetric q × q matrix, column-major (for tests on small data).
    public func denseZtZ() -> [Double] {
        let q = randomEffectsCount
        var d = [Double](repeating: 0, count: q * q)
        for c in 0..<q {
            for k in zzColumnStarts[c]..<zzColumnStarts[c + 1] {
                let r = zzRowIndices[k]
                d[r + c * q] = zzValues[k]
                d[c + r * q] = zzValues[k]
            }
        }
        return d
    }

    /// [Z'X Z'y] as a dense q × (p + 1) matrix, column-major (for tests).
    public var denseZtXy: [Double] { zxy }
    /// [X y]'[X y] as a dense (p + 1) × (p + 1) matrix, column-major (for tests).
    public var denseXyTXy: [Double] { xyxy }
}

/// One chunk of rows, already turned into model quantities.
///
/// For term k with `memberships` M (1 for an ordinary factor, several for `mm()`),
/// row i belongs to levels `levels[i * M + m]` (−1 = absent) with weights `weights[i * M + m]`,
/// and has effect covariates `z[i * p_k ..< (i + 1) * p_k]`.
struct ModelChunk {
    struct TermRows {
        var memberships: Int
        var levels: [Int32]
        var weights: [Double]
        var z: [Double]
    }
    var count: Int
    /// X, row-major count × p.
    var x: [Double]
    var y: [Double]
    var terms: [TermRows]
}

/// Accumulates `CrossProducts` from chunks of rows: memory is the cross-products, not the rows.
///
/// Diagonal blocks of Z'Z (a level with itself) live in one preallocated array; only blocks
/// between different levels (crossed terms, multiple membership) go through a hash map.
struct CrossProductAccumulator {
    let terms: [RandomEffectsTerm]
    let fixedNames: [String]
    private let q: Int
    private let p: Int
    private let termBlockBase: [Int]
    private let blockTerm: [Int]
    private let blockStart: [Int]
    private let diagonalOffset: [Int]
    private var diagonal: [Double]
    private var offDiagonalIndex: [UInt64: Int] = [:]
    private var offDiagonal: [Double] = []
    private var zxy: [Double]
    private var xyxy: [Double]
    private(set) var rows = 0

    init(terms: [RandomEffectsTerm], fixedNames: [String]) {
        self.terms = terms
        self.fixedNames = fixedNames
        q = terms.reduce(0) { $0 + $1.columns }
        p = fixedNames.count
        var base: [Int] = [], bTerm: [Int] = [], bStart: [Int] = [], dOff: [Int] = []
        var nextDiag = 0
        for (k, t) in terms.enumerated() {
            base.append(bTerm.count)
            for level in 0..<t.levels.count {
                bTerm.append(k)
                bStart.append(t.offset + level * t.dimension)
                dOff.append(nextDiag)
                nextDiag += t.dimension * t.dimension
            }
        }
        termBlockBase = base
        blockTerm = bTerm
        blockStart = bStart
        diagonalOffset = dOff
        diagonal = [Double](repeating: 0, count: nextDiag)
        zxy = [Double](repeating: 0, count: q * (p + 1))
        xyxy = [Double](repeating: 0, count: (p + 1) * (p + 1))
    }

    /// Adds the rows of one chunk.
    mutating func add(_ chunk: ModelChunk) {
        let p1 = p + 1
        var rowBlocks: [Int] = []
        var rowValues: [Double] = []      // p_k values per nonzero block, concatenated
        var valueStart: [Int] = []
        var order: [Int] = []
        var xy = [Double](repeating: 0, count: p1)
        for i in 0..<chunk.count {
            for j in 0..<p { xy[j] = chunk.x[i * p + j] }
            xy[p] = chunk.y[i]
            // [X y]'[X y]: upper triangle now, mirrored in `finish()`.
            for b in 0..<p1 {
                let vb = xy[b]
                if vb == 0 { continue }
                for a in 0...b { xyxy[a + b * p1] += xy[a] * vb }
            }
            // The nonzero blocks of this row of Z, duplicates within a term merged.
            rowBlocks.removeAll(keepingCapacity: true)
            rowValues.removeAll(keepingCapacity: true)
            valueStart.removeAll(keepingCapacity: true)
            for (k, tr) in chunk.terms.enumerated() {
                let pk = terms[k].dimension
                let m = tr.memberships
                let first = rowBlocks.count
                for mi in 0..<m {
                    let level = tr.levels[i * m + mi]
                    let w = tr.weights[i * m + mi]
                    if level < 0 || w == 0 { continue }
                    let block = termBlockBase[k] + Int(level)
                    if let existing = rowBlocks[first...].firstIndex(of: block) {
                        for t in 0..<pk { rowValues[valueStart[existing] + t] += w * tr.z[i * pk + t] }
                    } else {
                        rowBlocks.append(block)
                        valueStart.append(rowValues.count)
                        for t in 0..<pk { rowValues.append(w * tr.z[i * pk + t]) }
                    }
                }
            }
            order.removeAll(keepingCapacity: true)
            order.append(contentsOf: rowBlocks.indices)
            order.sort { rowBlocks[$0] < rowBlocks[$1] }
            for (oi, ia) in order.enumerated() {
                let a = rowBlocks[ia], pa = terms[blockTerm[a]].dimension, va = valueStart[ia]
                // Z'X, Z'y
                for t in 0..<pa {
                    let v = rowValues[va + t]
                    if v == 0 { continue }
                    let r = blockStart[a] + t
                    for j in 0..<p1 { zxy[r + j * q] += v * xy[j] }
                }
                // Diagonal block: full p_a × p_a.
                let d = diagonalOffset[a]
                for s in 0..<pa { for t in 0..<pa { diagonal[d + t + s * pa] += rowValues[va + t] * rowValues[va + s] } }
                // Blocks with later blocks of this row.
                for ib in order[(oi + 1)...] {
                    let b = rowBlocks[ib], pb = terms[blockTerm[b]].dimension, vb = valueStart[ib]
                    let key = UInt64(a) << 32 | UInt64(b)
                    let off: Int
                    if let o = offDiagonalIndex[key] {
                        off = o
                    } else {
                        off = offDiagonal.count
                        offDiagonalIndex[key] = off
                        offDiagonal.append(contentsOf: repeatElement(0, count: pa * pb))
                    }
                    for s in 0..<pb { for t in 0..<pa { offDiagonal[off + t + s * pa] += rowValues[va + t] * rowValues[vb + s] } }
                }
            }
        }
        rows += chunk.count
    }

    /// The finished cross-products, with Z'Z laid out on its block-complete pattern.
    func finish() -> CrossProducts {
        let nBlocks = blockTerm.count
        // Row blocks of each column block: the off-diagonal partners, then the block itself.
        var partners = [[(block: Int, offset: Int)]](repeating: [], count: nBlocks)
        for (key, off) in offDiagonalIndex {
            partners[Int(key & 0xffff_ffff)].append((Int(key >> 32), off))
        }
        var blockRowStarts = [0]
        var blockRows: [Int] = []
        var colStarts = [Int](repeating: 0, count: q + 1)
        var rowIdx: [Int] = []
        var values: [Double] = []
        rowIdx.reserveCapacity(diagonal.count + offDiagonal.count)
        values.reserveCapacity(diagonal.count + offDiagonal.count)
        for b in 0..<nBlocks {
            partners[b].sort { $0.block < $1.block }
            blockRows.append(contentsOf: partners[b].map(\.block))
            blockRows.append(b)
            blockRowStarts.append(blockRows.count)
            let pb = terms[blockTerm[b]].dimension
            for s in 0..<pb {
                let col = blockStart[b] + s
                for (a, off) in partners[b] {
                    let pa = terms[blockTerm[a]].dimension
                    for t in 0..<pa {
                        rowIdx.append(blockStart[a] + t)
                        values.append(offDiagonal[off + t + s * pa])
                    }
                }
                for t in 0...s {
                    rowIdx.append(blockStart[b] + t)
                    values.append(diagonal[diagonalOffset[b] + t + s * pb])
                }
                colStarts[col + 1] = rowIdx.count
            }
        }
        var full = xyxy
        let p1 = p + 1
        for b in 0..<p1 { for a in 0..<b { full[b + a * p1] = full[a + b * p1] } }
        return CrossProducts(rows: rows, terms: terms, fixedNames: fixedNames,
                             blockStart: blockStart, blockTerm: blockTerm,
                             blockRowStarts: blockRowStarts, blockRows: blockRows,
                             zzColumnStarts: colStarts, zzRowIndices: rowIdx, zzValues: values,
                             zxy: zxy, xyxy: full)
    }
}
