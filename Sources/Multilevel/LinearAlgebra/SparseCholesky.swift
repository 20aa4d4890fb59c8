import CCHOLMOD
import Foundation

/// The fill-reducing ordering used by the symbolic analysis.
public enum FillReducingOrdering: String, CaseIterable, Sendable {
    /// The cheapest by the symbolic analysis: CHOLMOD's natural, AMD and METIS orderings and the
    /// blocked factorisation (where it applies) are costed before any numeric work, and the
    /// one with the least predicted time per factorisation is taken (`FactorizationChoice`).
    case auto
    /// Let CHOLMOD try AMD and METIS and keep the one with the least fill (its default).
    case best
    /// Approximate minimum degree.
    case amd
    /// METIS nested dissection.
    case metis
    /// No permutation: the matrix's own order (terms sorted by decreasing number of levels).
    case natural
}

/// A Cholesky factorisation P A P' = L L' of a matrix with a fixed pattern, refactored per θ:
/// CHOLMOD's (`SparseCholesky`) or the blocked one with a dense Schur complement (`BlockedCholesky`).
protocol SymmetricFactorization: AnyObject {
    /// The stored values of A (upper triangle, compressed columns, in the pattern's order), to fill before `factorize()`.
    var values: UnsafeMutableBufferPointer<Double> { get }
    /// Numeric factorisation of the current `values`; false if A is not positive definite.
    func factorize() -> Bool
    /// log det(A) = log det(L)².
    func logDeterminant() -> Double
    /// b ← L⁻¹ P b, for a dense column-major q × `columns` b.
    func forwardSolve(_ b: inout [Double], columns: Int)
    /// b ← Pᵀ L⁻ᵀ b.
    func backwardSolve(_ b: inout [Double], columns: Int)
    /// The diagonal blocks of A⁻¹ (each `size × size`, column-major) for blocks of consecutive
    /// columns starting at `starts`, from the current factor.
    func inverseDiagonalBlocks(starts: [Int], size: [Int]) -> [[Double]]
    /// A⁻¹ at every stored entry of A's pattern (the layout of `values`), from the current factor:
    /// the selected inverse the gradient of the deviance needs.
    func inverseOnPattern() -> [Double]
}

extension SparseCholesky: SymmetricFactorization {
    func forwardSolve(_ b: inout [Double], columns: Int) {
        solve(.permute, &b, columns: columns)
        solve(.forward, &b, columns: columns)
    }

    func backwardSolve(_ b: inout [Double], columns: Int) {
        solve(.backward, &b, columns: columns)
        solve(.unpermute, &b, columns: columns)
    }

    /// The diagonal blocks of A⁻¹ by Takahashi's recurrences: Z = (LL')⁻¹ on the pattern of L
    /// (a simplicial copy of the factor), column by column from the last,
    ///
    ///     Z_ij = −(1/L_jj) Σ_{k ∈ S_j} L_kj Z_ik  (i ∈ S_j),   Z_jj = 1/L_jj² − (1/L_jj) Σ_{k ∈ S_j} L_kj Z_kj,
    ///
    /// S_j the rows below the diagonal in column j; every Z_ik needed is on the pattern (S_j is
    /// a clique of the filled graph). The cost is about that of one factorisation, and no dense
    /// inverse is formed. Then A⁻¹ = P'ZP gives each block.
    func inverseDiagonalBlocks(starts: [Int], size: [Int]) -> [[Double]] {
        selectedInverse { entry in
            zip(starts, size).map { start, p in
                var m = [Double](repeating: 0, count: p * p)
                for t in 0..<p { for u in 0..<p { m[u + t * p] = entry(start + u, start + t) } }
                return m
            }
        }
    }

    func inverseOnPattern() -> [Double] {
        let p = matrix.pointee.p.assumingMemoryBound(to: Int.self), i = matrix.pointee.i.assumingMemoryBound(to: Int.self)
        return selectedInverse { entry in
            var out = [Double](repeating: 0, count: p[dimension])
            for c in 0..<dimension { for k in p[c]..<p[c + 1] { out[k] = entry(i[k], c) } }
            return out
        }
    }

    /// Calls `body` with a lookup of A⁻¹[a, b] for (a, b) on the pattern of P'(L + L')P, computed
    /// by Takahashi's recurrences (see `inverseDiagonalBlocks`).
    private func selectedInverse<Result>(_ body: ((Int, Int) -> Double) -> Result) -> Result {
        guard let copy = cholmod_l_copy_factor(factor, common) else { preconditionFailure("CHOLMOD could not copy its factor") }
        var l: UnsafeMutablePointer<cholmod_factor>? = copy
        defer { cholmod_l_free_factor(&l, common) }
        guard cholmod_l_change_factor(mlm_cholmod_real(), 1, 0, 1, 1, copy, common) != 0 else {
            preconditionFailure("CHOLMOD could not make a simplicial copy of its factor")
        }
        let n = dimension
        let lp = copy.pointee.p.assumingMemoryBound(to: Int.self)
        let li = copy.pointee.i.assumingMemoryBound(to: Int.self)
        let lx = copy.pointee.x.assumingMemoryBound(to: Double.self)
        let perm = copy.pointee.Perm.assumingMemoryBound(to: Int.self)
        // Columns with sorted rows, diagonal first (CHOLMOD's simplicial layout), for the lookups below.
        var rows = [Int](repeating: 0, count: lp[n]), values = [Double](repeating: 0, count: lp[n])
        for j in 0..<n {
            let order = (lp[j]..<lp[j + 1]).sorted { li[$0] < li[$1] }
            precondition(li[order[0]] == j, "CHOLMOD's column \(j) does not start at its diagonal")
            for (k, e) in order.enumerated() { rows[lp[j] + k] = li[e]; values[lp[j] + k] = lx[e] }
        }
        // A factor that is nearly dense is inverted faster densely, by BLAS in tiles
        // (`TiledCholesky.invert`: 2n³/3 flops at BLAS speed), than by the scalar recurrences below
        // (Σ_k |col k| · |row k| indexed steps); both rates measured here, about 3·10¹⁰ and 10⁹ per second.
        var recurrenceSteps = 0.0
        var rowCounts = [Int](repeating: 0, count: n)
        for j in 0..<n { for e in (lp[j] + 1)..<lp[j + 1] { rowCounts[rows[e]] += 1 } }
        for k in 0..<n { recurrenceSteps += Double(lp[k + 1] - lp[k]) * Double(rowCounts[k]) }
        let order = Double(n)
        let dense: Bool
        switch inverseMethod {
        case .automatic: dense = n <= Self.largestDenseInverse && 2 * order * order * order / 3 / 3e10 < recurrenceSteps / 1e9
        case .dense: dense = true
        case .recurrences: dense = false
        }
        // A⁻¹[a, b] = Z[π(a), π(b)], π the inverse of CHOLMOD's permutation, Z = (LL')⁻¹.
        var inverse = [Int](repeating: 0, count: n)
        for k in 0..<n { inverse[perm[k]] = k }
        if dense {
            var full = [Double](repeating: 0, count: n * n)
            for j in 0..<n { for e in lp[j]..<lp[j + 1] { full[rows[e] + j * n] = values[e] } }
            TiledCholesky.invert(&full, order: n, threads: ProcessInfo.processInfo.activeProcessorCount)
            return body { a, b in full[inverse[a] + inverse[b] * n] }
        }
        var z = [Double](repeating: 0, count: lp[n])
        var position = [Int](repeating: -1, count: n)   // row → its place in the current S_j
        var sums = [Double](repeating: 0, count: n)
        for j in stride(from: n - 1, through: 0, by: -1) {
            let first = lp[j] + 1, end = lp[j + 1], ljj = values[lp[j]]
            for e in first..<end { position[rows[e]] = e - first; sums[e - first] = 0 }
            // Σ_k L_kj Z_ik for each i ∈ S_j, from the stored lower triangle of Z: column k holds
            // Z_rk for r ≥ k; a stored Z_rk with r, k ∈ S_j serves (i = r, k) and, if r ≠ k, (i = k, r).
            for e in first..<end {
                let k = rows[e], lkj = values[e]
                for f in lp[k]..<lp[k + 1] {
                    let r = rows[f], at = position[r]
                    guard at >= 0 else { continue }
                    sums[at] += lkj * z[f]
                    if r != k { sums[e - first] += values[first + at] * z[f] }
                }
            }
            var diagonal = 1 / (ljj * ljj)
            for e in first..<end {
                let zij = -sums[e - first] / ljj
                z[e] = zij
                diagonal -= values[e] * zij / ljj
            }
            z[lp[j]] = diagonal
            for e in first..<end { position[rows[e]] = -1 }
        }
        func entry(_ a: Int, _ b: Int) -> Double {
            let (r, c) = (max(inverse[a], inverse[b]), min(inverse[a], inverse[b]))
            var lo = lp[c], hi = lp[c + 1]
            while lo < hi { let mid = (lo + hi) / 2; if rows[mid] < r { lo = mid + 1 } else { hi = mid } }
            precondition(lo < lp[c + 1] && rows[lo] == r, "an entry of A's pattern lies outside the pattern of L")
            return z[lo]
        }
        return body(entry)
    }
}

/// A CHOLMOD sparse Cholesky factor `P A P' = L L'` of a symmetric positive-definite matrix
/// with a fixed sparsity pattern.
///
/// The symbolic analysis (ordering, elimination tree, supernodes) is done once, in `init`;
/// `factorize(values:)` refactors numerically for new values on the same pattern, which is
/// what the optimiser needs for every θ. Only this file calls CHOLMOD.
final class SparseCholesky {
    /// The largest order inverted densely for the selected inverse (8 · 8000² bytes = 512 MB).
    static let largestDenseInverse = 8_000

    /// How the selected inverse is computed: by predicted cost, or forced (tests compare the two).
    enum InverseMethod { case automatic, dense, recurrences }
    var inverseMethod = InverseMethod.automatic

    let dimension: Int
    private let common: UnsafeMutablePointer<cholmod_common>
    private let matrix: UnsafeMutablePointer<cholmod_sparse>
    private let factor: UnsafeMutablePointer<cholmod_factor>

    /// Analyses the pattern of the upper triangle of `A`, given in compressed-column form.
    ///
    /// - Parameters:
    ///   - dimension: the order of A.
    ///   - columnStarts: `dimension + 1` offsets into `rowIndices`.
    ///   - rowIndices: the row of each stored entry, sorted within a column, all `<=` the column.
    ///   - ordering: the fill-reducing ordering.
    init(dimension: Int, columnStarts: [Int], rowIndices: [Int32], ordering: FillReducingOrdering) throws {
        self.dimension = dimension
        common = .allocate(capacity: 1)
        cholmod_l_start(common)
        common.pointee.print = 0
        common.pointee.final_ll = 1          // simplicial factors in L L' form, like supernodal ones
        common.pointee.quick_return_if_not_posdef = 1
        switch ordering {
        case .best:
            break
        case .auto:
            preconditionFailure("the auto ordering is resolved by FactorizationChoice before CHOLMOD is called")
        case .amd:
            common.pointee.nmethods = 1
            common.pointee.method.0.ordering = mlm_cholmod_amd()
            common.pointee.postorder = 1
        case .metis:
            common.pointee.nmethods = 1
            common.pointee.method.0.ordering = mlm_cholmod_metis()
            common.pointee.postorder = 1
        case .natural:
            common.pointee.nmethods = 1
            common.pointee.method.0.ordering = mlm_cholmod_natural()
            common.pointee.postorder = 0
        }
        let nnz = rowIndices.count
        guard let a = cholmod_l_allocate_sparse(dimension, dimension, nnz, 1, 1, 1, mlm_cholmod_real(), common) else {
            cholmod_l_finish(common)
            common.deallocate()
            throw InputError("sparse Cholesky: cannot allocate a \(dimension) × \(dimension) matrix with \(nnz) entries")
        }
        let p = a.pointee.p.assumingMemoryBound(to: Int.self)
        let i = a.pointee.i.assumingMemoryBound(to: Int.self)
        let x = a.pointee.x.assumingMemoryBound(to: Double.self)
        for k in 0...dimension { p[k] = columnStarts[k] }
        for k in 0..<nnz { i[k] = Int(rowIndices[k]); x[k] = 0 }
        // Analyse on the pattern with a unit diagonal so the analysis sees every stored entry.
        matrix = a
        guard let l = cholmod_l_analyze(a, common) else {
            var m: UnsafeMutablePointer<cholmod_sparse>? = a
            cholmod_l_free_sparse(&m, common)
            cholmod_l_finish(common)
            common.deallocate()
            throw InputError("sparse Cholesky: symbolic analysis failed (CHOLMOD status \(common.pointee.status))")
        }
        factor = l
        factorNonzeros = common.pointee.lnz
        flops = common.pointee.fl
    }

    deinit {
        var m: UnsafeMutablePointer<cholmod_sparse>? = matrix
        cholmod_l_free_sparse(&m, common)
        var f: UnsafeMutablePointer<cholmod_factor>? = factor
        cholmod_l_free_factor(&f, common)
        cholmod_l_finish(common)
        common.deallocate()
    }

    /// The stored values of A (upper triangle, in the pattern's order), to fill before `factorize()`.
    var values: UnsafeMutableBufferPointer<Double> {
        UnsafeMutableBufferPointer(start: matrix.pointee.x.assumingMemoryBound(to: Double.self),
                                   count: Int(matrix.pointee.nzmax))
    }

    /// Whether the analysis chose a supernodal factor.
    var isSupernodal: Bool { factor.pointee.is_super != 0 }

    /// The number of nonzeros in L predicted by the analysis (without the zeros of supernodal amalgamation).
    let factorNonzeros: Double
    /// The flops of one numeric factorisation predicted by the analysis (CHOLMOD's count for a
    /// simplicial LL': Σ_j c_j², c_j the nonzeros of column j of L).
    let flops: Double

    /// The bytes one numeric factorisation holds: L's values and indices (the supernodal layout,
    /// amalgamation zeros included, or the simplicial one) and the largest update matrix.
    var factorBytes: Double {
        let f = factor.pointee, n = Double(dimension)
        if f.is_super != 0 {
            return 8 * (Double(f.xsize) + Double(f.ssize) + Double(f.maxcsize) + 3 * Double(f.nsuper) + 4 * n)
        }
        return 16 * factorNonzeros + 48 * n
    }

    /// The bytes of the copy of A (pattern and values) this factorisation keeps.
    static func matrixBytes(dimension: Int, nonzeros: Int) -> Double { 16 * Double(nonzeros) + 8 * Double(dimension) }

    /// The bytes the selected inverse (`inverseOnPattern`, for the gradient) holds on top of the
    /// factor: a simplicial copy of L, its rows and values sorted, and Z on L's pattern, 40 bytes a nonzero.
    static func selectedInverseBytes(nonzeros: Double) -> Double { 40 * nonzeros }

    /// The nonzeros of L (after `factorize()`) that are not exactly zero: the factor's true
    /// nonzeros, to check `factorNonzeros` against (amalgamation's zeros and the unused upper
    /// part of each supernode's diagonal block are left out).
    func countNonzeroEntries() -> Int {
        let f = factor.pointee
        let x = f.x.assumingMemoryBound(to: Double.self)
        var count = 0
        if f.is_super != 0 {
            let sup = f.super.assumingMemoryBound(to: Int.self)
            let pi = f.pi.assumingMemoryBound(to: Int.self), px = f.px.assumingMemoryBound(to: Int.self)
            for s in 0..<Int(f.nsuper) {
                let ncols = sup[s + 1] - sup[s], nrows = pi[s + 1] - pi[s]
                for k in 0..<ncols { for r in k..<nrows where x[px[s] + k * nrows + r] != 0 { count += 1 } }
            }
        } else {
            let p = f.p.assumingMemoryBound(to: Int.self), nz = f.nz.assumingMemoryBound(to: Int.self)
            for j in 0..<dimension { for k in p[j]..<(p[j] + nz[j]) where x[k] != 0 { count += 1 } }
        }
        return count
    }

    /// The entries of L's symbolic pattern (supernodal: amalgamation zeros included) by the pair of
    /// terms of their row and column: `counts[a][b]`, a ≤ b, with `term[c]` the term of A's column c.
    /// Nil for a simplicial analysis, which has no pattern before the numeric factorisation.
    func patternByTermPair(term: [Int], terms: Int) -> [[Double]]? {
        let f = factor.pointee
        guard f.is_super != 0 else { return nil }
        let sup = f.super.assumingMemoryBound(to: Int.self), pi = f.pi.assumingMemoryBound(to: Int.self)
        let rows = f.s.assumingMemoryBound(to: Int.self), perm = f.Perm.assumingMemoryBound(to: Int.self)
        var counts = [[Double]](repeating: [Double](repeating: 0, count: terms), count: terms)
        var below = [Int](repeating: 0, count: terms)
        for s in 0..<Int(f.nsuper) {
            for t in 0..<terms { below[t] = 0 }
            for r in pi[s]..<pi[s + 1] { below[term[perm[rows[r]]]] += 1 }
            // Column k of the supernode holds its rows from the k-th on.
            for k in 0..<(sup[s + 1] - sup[s]) {
                let a = term[perm[rows[pi[s] + k]]]
                for b in 0..<terms where below[b] > 0 { counts[min(a, b)][max(a, b)] += Double(below[b]) }
                below[a] -= 1
            }
        }
        return counts
    }

    /// CHOLMOD's predicted nonzeros and flops of L for each ordering, from a symbolic analysis
    /// (ordering, elimination tree and column counts; no supernodes are formed and nothing of the
    /// size of L is allocated), the orderings analysed at once on separate threads (InstEval:
    /// 0.05–0.07 s, METIS's time). The orderings are those `init` would compute, so its
    /// analysis with one of them predicts the same. One at a time when `concurrently` is false
    /// (their memory together would not fit).
    static func survey(dimension: Int, columnStarts: [Int], rowIndices: [Int32], orderings: [FillReducingOrdering],
                       concurrently: Bool = true) throws -> [(ordering: FillReducingOrdering, nonzeros: Double, flops: Double)] {
        var results = [(nonzeros: Double, flops: Double)?](repeating: nil, count: orderings.count)
        let lock = NSLock()
        let body = { (k: Int) in
            let counted = analyse(dimension: dimension, columnStarts: columnStarts, rowIndices: rowIndices, ordering: orderings[k])
            lock.lock()
            results[k] = counted
            lock.unlock()
        }
        if concurrently { DispatchQueue.concurrentPerform(iterations: orderings.count, execute: body) } else { orderings.indices.forEach(body) }
        return try orderings.indices.map { k in
            guard let r = results[k] else {
                throw InputError("sparse Cholesky: symbolic analysis (\(orderings[k].rawValue)) of the \(dimension) × \(dimension) pattern failed")
            }
            return (orderings[k], r.nonzeros, r.flops)
        }
    }

    /// One ordering's nonzeros and flops of L (`survey`), on a CHOLMOD workspace of its own; nil if
    /// CHOLMOD fails.
    private static func analyse(dimension: Int, columnStarts: [Int], rowIndices: [Int32],
                                ordering: FillReducingOrdering) -> (nonzeros: Double, flops: Double)? {
        let common = UnsafeMutablePointer<cholmod_common>.allocate(capacity: 1)
        cholmod_l_start(common)
        defer { cholmod_l_finish(common); common.deallocate() }
        common.pointee.print = 0
        common.pointee.supernodal = mlm_cholmod_simplicial()
        common.pointee.postorder = 1
        common.pointee.nmethods = 1
        let m = mlm_cholmod_method(common, 0)!
        switch ordering {
        case .amd: m.pointee.ordering = mlm_cholmod_amd()
        case .metis: m.pointee.ordering = mlm_cholmod_metis()
        case .natural: m.pointee.ordering = mlm_cholmod_natural()
        case .best, .auto: preconditionFailure("survey takes single orderings")
        }
        let nnz = rowIndices.count
        guard let a = cholmod_l_allocate_sparse(dimension, dimension, nnz, 1, 1, 1, mlm_cholmod_pattern(), common) else { return nil }
        var aa: UnsafeMutablePointer<cholmod_sparse>? = a
        defer { cholmod_l_free_sparse(&aa, common) }
        let p = a.pointee.p.assumingMemoryBound(to: Int.self), i = a.pointee.i.assumingMemoryBound(to: Int.self)
        for k in 0...dimension { p[k] = columnStarts[k] }
        for k in 0..<nnz { i[k] = Int(rowIndices[k]) }
        guard let l = cholmod_l_analyze(a, common) else { return nil }
        var ll: UnsafeMutablePointer<cholmod_factor>? = l
        cholmod_l_free_factor(&ll, common)
        let chosen = mlm_cholmod_method(common, 0)!.pointee
        return (chosen.lnz, chosen.fl)
    }

    /// Numeric factorisation of the current `values`. Returns false if A is not positive definite.
    func factorize() -> Bool {
        let ok = cholmod_l_factorize(matrix, factor, common)
        return ok != 0 && common.pointee.status == mlm_cholmod_ok()
    }

    /// log det(L)², i.e. log det(A).
    func logDeterminant() -> Double {
        var sum = 0.0
        let f = factor.pointee
        let x = f.x.assumingMemoryBound(to: Double.self)
        if f.is_super != 0 {
            let sup = f.super.assumingMemoryBound(to: Int.self)
            let pi = f.pi.assumingMemoryBound(to: Int.self)
            let px = f.px.assumingMemoryBound(to: Int.self)
            for s in 0..<Int(f.nsuper) {
                let ncols = sup[s + 1] - sup[s]
                let nrows = pi[s + 1] - pi[s]
                let start = px[s]
                for k in 0..<ncols { sum += log(x[start + k * nrows + k]) }
            }
        } else {
            let p = f.p.assumingMemoryBound(to: Int.self)
            for j in 0..<dimension { sum += log(x[p[j]]) }
        }
        return 2 * sum
    }

    /// Solves in place on a dense column-major `dimension × columns` matrix.
    ///
    /// `system` is one of `.permute` (B ← P B), `.forward` (B ← L⁻¹ B), `.backward` (B ← L⁻ᵀ B),
    /// `.unpermute` (B ← Pᵀ B).
    func solve(_ system: SolveSystem, _ b: inout [Double], columns: Int) {
        precondition(b.count == dimension * columns)
        let sys: Int32
        switch system {
        case .permute: sys = mlm_cholmod_P()
        case .forward: sys = mlm_cholmod_L()
        case .backward: sys = mlm_cholmod_Lt()
        case .unpermute: sys = mlm_cholmod_Pt()
        }
        b.withUnsafeMutableBufferPointer { buf in
            var dense = cholmod_dense()
            dense.nrow = dimension
            dense.ncol = columns
            dense.nzmax = dimension * columns
            dense.d = dimension
            dense.x = UnsafeMutableRawPointer(buf.baseAddress!)
            dense.z = nil
            dense.xtype = mlm_cholmod_real()
            dense.dtype = mlm_cholmod_double()
            guard let result = cholmod_l_solve(sys, factor, &dense, common) else { return }
            let rx = result.pointee.x.assumingMemoryBound(to: Double.self)
            for k in 0..<(dimension * columns) { buf[k] = rx[k] }
            var r: UnsafeMutablePointer<cholmod_dense>? = result
            cholmod_l_free_dense(&r, common)
        }
    }

    enum SolveSystem { case permute, forward, backward, unpermute }
}

