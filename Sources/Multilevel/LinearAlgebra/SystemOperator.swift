import Foundation

/// A = Λ'Z'ZΛ + I applied to blocks of vectors without a factor: the one operation the iterative
/// path (`IterativePenalizedLeastSquares`) needs of the random effects' system.
///
/// Z'Z is the cross-products' own upper triangle by columns (no copy). A product y = Z'Z x
/// takes each column c twice: its entries gather y_c = Σ_r (Z'Z)_rc x_r, and scatter
/// (Z'Z)_rc x_c into y_r for r < c. The columns are cut into `chunks` fixed ranges of about
/// equal entries, worked on by the threads; each range scatters into its own buffer, and the
/// buffers are added to y in range order. Every entry of y is thus the same sum in the same
/// order whatever the threads, the number of vectors or the ranks. A block of k vectors is
/// stored row-interleaved (entry i of vector j at `i * k + j`) and taken eight at a time (one
/// SIMD register), so the buffers hold `chunks × q × 8` values whatever k.
///
/// Memory: the buffers, 8 · 8 · q · 8 bytes (the cross-products hold Z'Z already).
final class SystemOperator: @unchecked Sendable {
    let dimension: Int
    let columnStarts: [Int]
    let rowIndices: [Int]
    let values: [Double]
    /// Column c is in range h when chunkStarts[h] ≤ c < chunkStarts[h + 1].
    let chunkStarts: [Int]
    let factor: RelativeCovarianceFactor
    let threads: Int
    /// The T_k of the θ set last (`setTheta`).
    private(set) var templates: [[Double]]
    /// Fixed, so that the sums do not depend on the threads.
    static let chunks = 8

    init(_ cp: CrossProducts, threads: Int) {
        let q = cp.randomEffectsCount
        dimension = q
        factor = RelativeCovarianceFactor(terms: cp.terms)
        self.threads = max(1, threads)
        templates = factor.templates(factor.initialTheta)
        columnStarts = cp.zzColumnStarts
        rowIndices = cp.zzRowIndices
        values = cp.zzValues
        let total = columnStarts[q]
        var starts = [0]
        var c = 0
        for h in 1..<Self.chunks {
            let target = total * h / Self.chunks
            while c < q && columnStarts[c] < target { c += 1 }
            starts.append(max(c, starts.last!))
        }
        starts.append(q)
        chunkStarts = starts
    }

    /// Bytes this operator adds to the cross-products: the scatter buffers.
    static func bytes(dimension q: Int, upperNonzeros: Int) -> Double {
        Double(chunks * 8 * 8) * Double(q)
    }

    /// y = Z'Z x for k row-interleaved vectors.
    func productZtZ(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, vectors k: Int) {
        let q = dimension, chunks = chunkStarts.count - 1
        guard q > 0, k > 0 else { return }
        var buffers = [Double](repeating: 0, count: chunks * q * 8)
        columnStarts.withUnsafeBufferPointer { cs in
            rowIndices.withUnsafeBufferPointer { ri in
                values.withUnsafeBufferPointer { val in
                    buffers.withUnsafeMutableBufferPointer { bp in
                        let cs = cs.baseAddress!, ri = ri.baseAddress!, val = val.baseAddress!, buf = bp.baseAddress!
                        var group = 0
                        while group < k {
                            let width = min(8, k - group)
                            if group > 0 { buf.update(repeating: 0, count: chunks * q * 8) }
                            // Gather into y, scatter into range h's buffer (8 values per row).
                            let gather: (Int) -> Void = { h in
                                let out = buf + h * q * 8
                                for c in self.chunkStarts[h]..<self.chunkStarts[h + 1] {
                                    let xc = x + c * k + group, yc = y + c * k + group
                                    if width == 8 {
                                        let xv = UnsafeRawPointer(xc).loadUnaligned(as: SIMD8<Double>.self)
                                        var sum = SIMD8<Double>(repeating: 0)
                                        for e in cs[c]..<cs[c + 1] {
                                            let r = ri[e], v = val[e]
                                            sum += v * UnsafeRawPointer(x + r * k + group).loadUnaligned(as: SIMD8<Double>.self)
                                            if r != c {
                                                let target = UnsafeMutableRawPointer(out + r * 8)
                                                target.storeBytes(of: target.load(as: SIMD8<Double>.self) + v * xv, as: SIMD8<Double>.self)
                                            }
                                        }
                                        UnsafeMutableRawPointer(yc).storeBytes(of: sum, as: SIMD8<Double>.self)
                                    } else {
                                        for j in 0..<width { yc[j] = 0 }
                                        for e in cs[c]..<cs[c + 1] {
                                            let r = ri[e], v = val[e], xr = x + r * k + group
                                            for j in 0..<width { yc[j] += v * xr[j] }
                                            if r != c { for j in 0..<width { out[r * 8 + j] += v * xc[j] } }
                                        }
                                    }
                                }
                            }
                            if self.threads == 1 || q * width < 4096 {
                                for h in 0..<chunks { gather(h) }
                            } else {
                                DispatchQueue.concurrentPerform(iterations: chunks, execute: gather)
                            }
                            // y += the buffers, in range order, by rows.
                            let slices = min(q, self.threads * 8)
                            let reduce: (Int) -> Void = { slice in
                                for i in (slice * q / slices)..<((slice + 1) * q / slices) {
                                    let yi = y + i * k + group
                                    for h in 0..<chunks {
                                        let b = buf + h * q * 8 + i * 8
                                        for j in 0..<width { yi[j] += b[j] }
                                    }
                                }
                            }
                            if self.threads == 1 || q * width < 4096 {
                                for slice in 0..<slices { reduce(slice) }
                            } else {
                                DispatchQueue.concurrentPerform(iterations: slices, execute: reduce)
                            }
                            group += width
                        }
                    }
                }
            }
        }
    }

    func setTheta(_ theta: [Double]) { templates = factor.templates(theta) }

    /// y = A x = Λ'Z'ZΛx + x for k row-interleaved vectors (θ from `setTheta`).
    func apply(_ x: [Double], vectors k: Int) -> [Double] {
        var lx = x
        applyLambda(&lx, vectors: k, transpose: false)
        var y = [Double](repeating: 0, count: x.count)
        lx.withUnsafeBufferPointer { lp in y.withUnsafeMutableBufferPointer { yp in
            productZtZ(lp.baseAddress!, yp.baseAddress!, vectors: k)
        } }
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
                for c in base..<(base + p) {
                    for e in columnStarts[c]..<columnStarts[c + 1] where rowIndices[e] >= base {
                        let r = rowIndices[e]
                        b[(r - base) + (c - base) * p] = values[e]
                        b[(c - base) + (r - base) * p] = values[e]
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

    enum Operation { case solve, lower, inverseLower, inverseTransposeLower }

    /// v ← M⁻¹v (`solve`), L v (`lower`), L⁻¹v (`inverseLower`) or L⁻ᵀv (`inverseTransposeLower`)
    /// for k row-interleaved vectors.
    func apply(_ op: Operation, to v: UnsafeMutablePointer<Double>, vectors k: Int, only column: Int? = nil) {
        let columns = column.map { $0..<($0 + 1) } ?? 0..<k
        for (b, l) in factors.enumerated() {
            let p = sizes[b], base = offsets[b] * k
            if p == 1 {
                let d = l[0]
                for j in columns {
                    switch op {
                    case .solve: v[base + j] /= d * d
                    case .lower: v[base + j] *= d
                    case .inverseLower, .inverseTransposeLower: v[base + j] /= d
                    }
                }
                continue
            }
            for j in columns {
                switch op {
                case .lower:
                    for r in stride(from: p - 1, through: 0, by: -1) {
                        var s = 0.0
                        for c in 0...r { s += l[r + c * p] * v[base + c * k + j] }
                        v[base + r * k + j] = s
                    }
                case .solve, .inverseLower, .inverseTransposeLower:
                    if op != .inverseTransposeLower {
                        for r in 0..<p {   // L w = v
                            var s = v[base + r * k + j]
                            for c in 0..<r { s -= l[r + c * p] * v[base + c * k + j] }
                            v[base + r * k + j] = s / l[r + r * p]
                        }
                    }
                    if op == .inverseLower { continue }
                    for r in stride(from: p - 1, through: 0, by: -1) {   // L'x = w
                        var s = v[base + r * k + j]
                        for c in (r + 1)..<max(r + 1, p) { s -= l[c + r * p] * v[base + c * k + j] }
                        v[base + r * k + j] = s / l[r + r * p]
                    }
                }
            }
        }
    }
}
