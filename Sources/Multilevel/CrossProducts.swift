import Foundation

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
    let blockRows: [Int32]

    /// Z'Z, upper triangle, compressed columns (row indices in 32 bits: crossed-mm at 10^7 rows
    /// stores 5.9·10^7 entries, and 8-byte indices took 0.23 GB more).
    let zzColumnStarts: [Int]
    let zzRowIndices: [Int32]
    let zzValues: [Double]
    /// Z'X (q × p) and Z'y (q), column-major as one q × (p + 1) matrix [Z'X Z'y].
    let zxy: [Double]
    /// [X y]'[X y], (p + 1) × (p + 1) column-major, both triangles.
    let xyxy: [Double]
    /// Σ log w_i over the rows, for precision weights w (0 without): every product above is of
    /// the rows scaled by √w_i, and the criterion is that of the scaled rows minus this.
    let logWeights: Double

    /// q: the number of random effects.
    public var randomEffectsCount: Int { terms.reduce(0) { $0 + $1.columns } }
    /// p: the number of fixed-effect columns.
    public var fixedCount: Int { fixedNames.count }

    /// ν of σ̂² = r²/ν: n − p for REML, n for ML.
    func residualDegreesOfFreedom(reml: Bool) -> Double { Double(reml ? rows - fixedCount : rows) }

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
                             zxy: zxy2, xyxy: xyxy2, logWeights: logWeights)
    }

    /// Σ_g w_g (group g's cross-products): the rows of group g weighted by w_g, n = Σ n_g and
    /// Σ log w over the rows = Σ_g n_g log w_g. The parts share one pattern (`groupCrossProducts`).
    static func combining(_ parts: [CrossProducts], weights: [Double]) -> CrossProducts {
        let first = parts[0]
        var zz = [Double](repeating: 0, count: first.zzValues.count)
        var zxy = [Double](repeating: 0, count: first.zxy.count), xyxy = [Double](repeating: 0, count: first.xyxy.count)
        var logWeights = 0.0
        for (part, w) in zip(parts, weights) {
            precondition(part.zzRowIndices.count == first.zzRowIndices.count, "group cross-products on different patterns")
            for i in zz.indices { zz[i] += w * part.zzValues[i] }
            for i in zxy.indices { zxy[i] += w * part.zxy[i] }
            for i in xyxy.indices { xyxy[i] += w * part.xyxy[i] }
            logWeights += part.logWeights + Double(part.rows) * log(w)
        }
        return CrossProducts(rows: parts.reduce(0) { $0 + $1.rows }, terms: first.terms, fixedNames: first.fixedNames,
                             blockStart: first.blockStart, blockTerm: first.blockTerm,
                             blockRowStarts: first.blockRowStarts, blockRows: first.blockRows,
                             zzColumnStarts: first.zzColumnStarts, zzRowIndices: first.zzRowIndices, zzValues: zz,
                             zxy: zxy, xyxy: xyxy, logWeights: logWeights)
    }

    /// Z'Z as a dense symmetric q × q matrix, column-major (for tests on small data).
    public func denseZtZ() -> [Double] {
        let q = randomEffectsCount
        var d = [Double](repeating: 0, count: q * q)
        for c in 0..<q {
            for k in zzColumnStarts[c]..<zzColumnStarts[c + 1] {
                let r = Int(zzRowIndices[k])
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
    /// Σ log w_i over the chunk's rows, with precision weights (which scale the rows above by √w_i).
    var logWeights = 0.0
    /// A GLMM's binomial failures (`cbind(y, failures)`) and offset per row; empty when absent.
    var failures: [Double] = []
    var offset: [Double] = []
    /// The residual variance's group (level code) or covariate of each row (`--residual-variance`).
    var varianceGroups: [Int32] = []
    var varianceCovariate: [Double] = []
    /// The rows counted in n, when not `count` (a group's share of the chunk, the others' rows zero).
    var countedRows: Int?

    /// The chunk with every row not of residual-variance group `g` scaled by 0, counting only
    /// group g's rows: its cross-products are group g's, on the pattern of all the rows.
    func group(_ g: Int32) -> ModelChunk {
        var out = self
        let p = count > 0 ? x.count / count : 0
        var counted = 0
        for i in 0..<count {
            if varianceGroups[i] == g { counted += 1; continue }
            out.y[i] = 0
            for j in 0..<p { out.x[i * p + j] = 0 }
            for k in terms.indices {
                let pk = terms[k].z.count / count
                for t in 0..<pk { out.terms[k].z[i * pk + t] = 0 }
            }
        }
        out.countedRows = counted
        return out
    }

    /// Scales each row of X, y and every term's Z by √w_i (precision weights w, one per row).
    mutating func weigh(_ w: [Double]) {
        let p = count > 0 ? x.count / count : 0
        for i in 0..<count {
            let s = w[i].squareRoot()
            y[i] *= s
            for j in 0..<p { x[i * p + j] *= s }
            for k in terms.indices {
                let pk = terms[k].z.count / count
                for t in 0..<pk { terms[k].z[i * pk + t] *= s }
            }
            logWeights += log(w[i])
        }
    }
}
