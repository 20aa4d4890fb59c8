import Foundation

/// A = Λ'Z'ZΛ + I applied to blocks of vectors without a factor: the one operation the iterative
/// path (`IterativePenalizedLeastSquares`) needs of the random effects' system.
///
/// Z'Z is read by rows, so each entry of a product is one row's sum in a fixed order: products
/// are the same bit for bit whatever the number of threads, which split the rows. Row i is the
/// cross-products' column i (its entries r ≤ i, ascending: Z'Z's upper triangle in compressed
/// columns is its lower one in compressed rows), shared with them rather than copied, then the
/// strict upper part of the row (columns > i, ascending, held here with 32-bit indices): so
/// every row is summed in ascending column order. A block of k vectors is stored
/// row-interleaved (entry i of vector j at `i * k + j`), so each stored entry of Z'Z is read once
/// for all k vectors.
///
/// Memory: 12 bytes for each stored entry of the upper triangle off the diagonal and 8 bytes per
/// row; the rest is the cross-products' (crossed-mm at 10^7 rows: 0.70 GB less than a copy of
/// both triangles, which took 24 bytes per entry).
final class SystemOperator: @unchecked Sendable {
    let dimension: Int
    /// Row i's lower part: the cross-products' column i.
    let lowerStarts: [Int]
    let lowerColumns: [Int32]
    let lowerValues: [Double]
    /// Row i's strict upper part.
    let upperStarts: [Int]
    let upperColumns: [Int32]
    let upperValues: [Double]
    let factor: RelativeCovarianceFactor
    let threads: Int
    /// The T_k of the θ set last (`setTheta`).
    private(set) var templates: [[Double]]

    init(_ cp: CrossProducts, threads: Int) {
        let q = cp.randomEffectsCount
        dimension = q
        factor = RelativeCovarianceFactor(terms: cp.terms)
        self.threads = max(1, threads)
        templates = factor.templates(factor.initialTheta)
        let cs = cp.zzColumnStarts, ri = cp.zzRowIndices, zz = cp.zzValues
        lowerStarts = cs
        lowerColumns = ri
        lowerValues = zz
        var counts = [Int](repeating: 0, count: q + 1)
        for c in 0..<q { for e in cs[c]..<cs[c + 1] where ri[e] != c { counts[Int(ri[e]) + 1] += 1 } }
        for i in 0..<q { counts[i + 1] += counts[i] }
        var next = Array(counts[0..<q])
        var columns = [Int32](repeating: 0, count: counts[q])
        var values = [Double](repeating: 0, count: counts[q])
        // Column c's entries r < c go to row r as column c: taking c in order leaves every row's
        // columns ascending.
        for c in 0..<q {
            for e in cs[c]..<cs[c + 1] where ri[e] != c {
                let r = Int(ri[e])
                columns[next[r]] = Int32(c); values[next[r]] = zz[e]; next[r] += 1
            }
        }
        upperStarts = counts
        upperColumns = columns
        upperValues = values
    }

    /// Bytes this operator holds beyond the cross-products for Z'Z with `upperNonzeros` stored
    /// entries of one triangle (the diagonal among them).
    static func bytes(dimension q: Int, upperNonzeros: Int) -> Double {
        12 * Double(max(0, upperNonzeros - q)) + 8 * Double(q + 1)
    }

    func setTheta(_ theta: [Double]) { templates = factor.templates(theta) }

    /// The stored rows, as raw pointers for the products' inner loops.
    private struct Rows {
        let lowerStarts: UnsafePointer<Int>, lowerColumns: UnsafePointer<Int32>, lowerValues: UnsafePointer<Double>
        let upperStarts: UnsafePointer<Int>, upperColumns: UnsafePointer<Int32>, upperValues: UnsafePointer<Double>

        /// Row i's sum Σ_c (Z'Z)_ic x_c over its entries in ascending c, for one vector.
        @inline(__always) func product(_ i: Int, _ x: UnsafePointer<Double>) -> Double {
            var sum = 0.0
            for e in lowerStarts[i]..<lowerStarts[i + 1] { sum += lowerValues[e] * x[Int(lowerColumns[e])] }
            for e in upperStarts[i]..<upperStarts[i + 1] { sum += upperValues[e] * x[Int(upperColumns[e])] }
            return sum
        }

        /// The same for vector j of k row-interleaved ones.
        @inline(__always) func product(_ i: Int, _ x: UnsafePointer<Double>, vectors k: Int, vector j: Int) -> Double {
            var sum = 0.0
            for e in lowerStarts[i]..<lowerStarts[i + 1] { sum += lowerValues[e] * x[Int(lowerColumns[e]) * k + j] }
            for e in upperStarts[i]..<upperStarts[i + 1] { sum += upperValues[e] * x[Int(upperColumns[e]) * k + j] }
            return sum
        }

        /// The same for the vectors j ..< j + V.scalarCount, in one SIMD register.
        @inline(__always) func product<V: SIMD>(_: V.Type, _ i: Int, _ x: UnsafePointer<Double>, vectors k: Int, from j: Int,
                                                into out: UnsafeMutablePointer<Double>) where V.Scalar == Double {
            var sum = V(repeating: 0)
            for e in lowerStarts[i]..<lowerStarts[i + 1] {
                sum += lowerValues[e] * UnsafeRawPointer(x + Int(lowerColumns[e]) * k + j).loadUnaligned(as: V.self)
            }
            for e in upperStarts[i]..<upperStarts[i + 1] {
                sum += upperValues[e] * UnsafeRawPointer(x + Int(upperColumns[e]) * k + j).loadUnaligned(as: V.self)
            }
            UnsafeMutableRawPointer(out + j).storeBytes(of: sum, as: V.self)
        }
    }

    /// Calls `body` with the stored rows.
    private func withRows<R>(_ body: (Rows) -> R) -> R {
        lowerStarts.withUnsafeBufferPointer { ls in lowerColumns.withUnsafeBufferPointer { lc in
            lowerValues.withUnsafeBufferPointer { lv in upperStarts.withUnsafeBufferPointer { us in
                upperColumns.withUnsafeBufferPointer { uc in upperValues.withUnsafeBufferPointer { uv in
                    body(Rows(lowerStarts: ls.baseAddress!, lowerColumns: lc.baseAddress!, lowerValues: lv.baseAddress!,
                              upperStarts: us.baseAddress!, upperColumns: uc.baseAddress!, upperValues: uv.baseAddress!))
                } }
            } }
        } }
    }

    /// Vectors multiplied in one pass over Z'Z: more are gathered into passes of this many, whose
    /// vectors stay in cache (see `IterativePenalizedLeastSquares.probeBlock`); the same bits.
    static let passWidth = 8

    /// y = Z'Z x for k row-interleaved vectors.
    func productZtZ(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, vectors k: Int) {
        let q = dimension, w = Self.passWidth
        guard k <= w else {
            var xs = [Double](repeating: 0, count: q * w), ys = xs
            for first in stride(from: 0, to: k, by: w) {
                let kb = min(w, k - first)
                for i in 0..<q { for c in 0..<kb { xs[i * kb + c] = x[i * k + first + c] } }
                xs.withUnsafeBufferPointer { xp in ys.withUnsafeMutableBufferPointer { yp in
                    productZtZ(xp.baseAddress!, yp.baseAddress!, vectors: kb)
                } }
                for i in 0..<q { for c in 0..<kb { y[i * k + first + c] = ys[i * kb + c] } }
            }
            return
        }
        let chunks = min(q, threads * 8)
        guard chunks > 0 else { return }
        withRows { rows in
            let body: (Int) -> Void = { chunk in
                let first = chunk * q / chunks, last = (chunk + 1) * q / chunks
                if k == 1 {
                    for i in first..<last { y[i] = rows.product(i, x) }
                    return
                }
                // Eight vectors at a time in one SIMD register (then four, then one), over the
                // row's entries; each entry's sum runs over the row in the same order whatever k.
                for i in first..<last {
                    let out = y + i * k
                    var j = 0
                    while k - j >= 8 {
                        rows.product(SIMD8<Double>.self, i, x, vectors: k, from: j, into: out)
                        j += 8
                    }
                    if k - j >= 4 {
                        rows.product(SIMD4<Double>.self, i, x, vectors: k, from: j, into: out)
                        j += 4
                    }
                    for j in j..<k { out[j] = rows.product(i, x, vectors: k, vector: j) }
                }
            }
            if threads == 1 || q * k < 4096 {
                for c in 0..<chunks { body(c) }
            } else {
                DispatchQueue.concurrentPerform(iterations: chunks, execute: body)
            }
        }
    }

    /// y = A x = Λ'Z'ZΛx + x for k row-interleaved vectors (θ from `setTheta`).
    func apply(_ x: [Double], vectors k: Int) -> [Double] {
        var y = productZtZLambda(x, vectors: k)
        applyLambda(&y, vectors: k, transpose: true)
        for i in y.indices { y[i] += x[i] }
        return y
    }

    /// Z'Z Λ x for k row-interleaved vectors.
    func productZtZLambda(_ x: [Double], vectors k: Int) -> [Double] {
        var lx = x
        applyLambda(&lx, vectors: k, transpose: false)
        var y = [Double](repeating: 0, count: x.count)
        lx.withUnsafeBufferPointer { lp in y.withUnsafeMutableBufferPointer { yp in
            productZtZ(lp.baseAddress!, yp.baseAddress!, vectors: k)
        } }
        return y
    }

    /// v ← Λv or Λ'v for k row-interleaved vectors.
    func applyLambda(_ v: inout [Double], vectors k: Int, transpose: Bool) {
        v.withUnsafeMutableBufferPointer { buf in
            for (t, term) in factor.terms.enumerated() {
                let p = term.dimension, tk = templates[t]
                if p == 1 {
                    let s = tk[0]
                    for i in (term.offset * k)..<((term.offset + term.columns) * k) { buf[i] *= s }
                    continue
                }
                var column = [Double](repeating: 0, count: p)
                for level in 0..<term.levels.count {
                    let base = (term.offset + level * p) * k
                    for j in 0..<k {
                        for r in 0..<p { column[r] = buf[base + r * k + j] }
                        for r in 0..<p {
                            var sum = 0.0
                            if transpose { for s in r..<p { sum += tk[s + r * p] * column[s] } }   // (T'v)[r]
                            else { for s in 0...r { sum += tk[r + s * p] * column[s] } }           // (Tv)[r]
                            buf[base + r * k + j] = sum
                        }
                    }
                }
            }
        }
    }

    /// The diagonal block of Z'Z for each level of each term (p_k × p_k, column-major), in Z's order.
    func diagonalBlocks() -> [[Double]] {
        var blocks: [[Double]] = []
        for term in factor.terms {
            let p = term.dimension
            for level in 0..<term.levels.count {
                let base = term.offset + level * p
                var b = [Double](repeating: 0, count: p * p)
                for r in 0..<p {
                    let i = base + r
                    for e in lowerStarts[i]..<lowerStarts[i + 1] where Int(lowerColumns[e]) >= base {
                        b[r + (Int(lowerColumns[e]) - base) * p] = lowerValues[e]
                    }
                    for e in upperStarts[i]..<upperStarts[i + 1] where Int(upperColumns[e]) < base + p {
                        b[r + (Int(upperColumns[e]) - base) * p] = upperValues[e]
                    }
                }
                blocks.append(b)
            }
        }
        return blocks
    }
}

/// M = the block diagonal of A = Λ'Z'ZΛ + I (one p_k × p_k block per level of each term), held
/// as the Cholesky factors L_b of its blocks: the preconditioner of the conjugate gradients, and
/// the part of log|A| that is computed exactly (log|M|).
struct BlockJacobiPreconditioner {
    /// Each block's size and offset in Z's columns, and its factor L_b (lower, column-major).
    let sizes: [Int]
    let offsets: [Int]
    let factors: [[Double]]
    let logDeterminant: Double

    /// M's blocks for the templates T_k: T_k'(Z'Z)_bb T_k + I. Nil if one is not positive definite.
    init?(diagonal zz: [[Double]], terms: [RandomEffectsTerm], templates: [[Double]]) {
        var sizes: [Int] = [], offsets: [Int] = [], factors: [[Double]] = []
        var logDet = 0.0
        var b = 0
        for (k, term) in terms.enumerated() {
            let p = term.dimension, t = templates[k]
            for level in 0..<term.levels.count {
                let q = zz[b]
                b += 1
                // T'QT + I.
                var qt = [Double](repeating: 0, count: p * p)
                for c in 0..<p { for r in 0..<p {
                    var s = 0.0
                    for u in c..<p { s += q[r + u * p] * t[u + c * p] }
                    qt[r + c * p] = s
                } }
                var m = [Double](repeating: 0, count: p * p)
                for c in 0..<p { for r in 0..<p {
                    var s = r == c ? 1.0 : 0.0
                    for u in r..<p { s += t[u + r * p] * qt[u + c * p] }
                    m[r + c * p] = s
                } }
                let ok = m.withUnsafeMutableBufferPointer { DenseCholesky.lowerInPlace($0, offset: 0, order: p) }
                guard ok else { return nil }
                for r in 0..<p { logDet += 2 * Foundation.log(m[r + r * p]) }
                sizes.append(p)
                offsets.append(term.offset + level * p)
                factors.append(m)
            }
        }
        self.sizes = sizes
        self.offsets = offsets
        self.factors = factors
        logDeterminant = logDet
    }

    /// V ← M_b⁻¹V for a p_b × p_b column-major V (block b alone): two triangular solves with L_b per column.
    func solve(block b: Int, _ v: inout [Double]) {
        let p = sizes[b], l = factors[b]
        for c in 0..<p {
            let o = c * p
            for r in 0..<p { for t in 0..<r { v[o + r] -= l[r + t * p] * v[o + t] }; v[o + r] /= l[r + r * p] }
            for r in stride(from: p - 1, through: 0, by: -1) {
                for t in (r + 1)..<max(r + 1, p) { v[o + r] -= l[t + r * p] * v[o + t] }
                v[o + r] /= l[r + r * p]
            }
        }
    }

    enum Operation { case solve, lower, inverseLower, inverseTransposeLower }

    /// v ← M⁻¹v (`solve`), L v (`lower`), L⁻¹v (`inverseLower`) or L⁻ᵀv (`inverseTransposeLower`)
    /// for k row-interleaved vectors.
    func apply(_ op: Operation, to v: UnsafeMutablePointer<Double>, vectors k: Int, only column: Int? = nil) {
        let columns = column.map { $0..<($0 + 1) } ?? 0..<k
        for b in factors.indices { apply(op, block: b, to: v + offsets[b] * k, vectors: k, columns: columns) }
    }

    /// The same with block b alone, on the p_b rows of k row-interleaved vectors that start at `v`.
    func apply(_ op: Operation, block b: Int, to v: UnsafeMutablePointer<Double>, vectors k: Int, columns: Range<Int>) {
        let p = sizes[b], l = factors[b]
        if p == 1 {
            let d = l[0]
            for j in columns {
                switch op {
                case .solve: v[j] /= d * d
                case .lower: v[j] *= d
                case .inverseLower, .inverseTransposeLower: v[j] /= d
                }
            }
            return
        }
        for j in columns {
            switch op {
            case .lower:
                for r in stride(from: p - 1, through: 0, by: -1) {
                    var s = 0.0
                    for c in 0...r { s += l[r + c * p] * v[c * k + j] }
                    v[r * k + j] = s
                }
            case .solve, .inverseLower, .inverseTransposeLower:
                if op != .inverseTransposeLower {
                    for r in 0..<p {   // L w = v
                        var s = v[r * k + j]
                        for c in 0..<r { s -= l[r + c * p] * v[c * k + j] }
                        v[r * k + j] = s / l[r + r * p]
                    }
                }
                if op == .inverseLower { continue }
                for r in stride(from: p - 1, through: 0, by: -1) {   // L'x = w
                    var s = v[r * k + j]
                    for c in (r + 1)..<max(r + 1, p) { s -= l[c + r * p] * v[c * k + j] }
                    v[r * k + j] = s / l[r + r * p]
                }
            }
        }
    }
}
