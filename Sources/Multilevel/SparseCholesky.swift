import CCHOLMOD
import Foundation

/// The fill-reducing ordering used by the symbolic analysis.
public enum FillReducingOrdering: String, CaseIterable, Sendable {
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

    /// Block (B, B) of A⁻¹ = (L⁻¹PE_B)'(L⁻¹PE_B): forward solves on the blocks' unit vectors,
    /// up to 256 columns at a time. Cost: about q · nnz(L) multiply-adds for all of them.
    func inverseDiagonalBlocks(starts: [Int], size: [Int]) -> [[Double]] {
        let q = dimension
        var out: [[Double]] = []
        out.reserveCapacity(starts.count)
        var first = 0
        while first < starts.count {
            var last = first, columns = 0
            while last < starts.count && (columns == 0 || columns + size[last] <= 256) { columns += size[last]; last += 1 }
            var b = [Double](repeating: 0, count: q * columns)
            var c = 0
            for k in first..<last { for t in 0..<size[k] { b[starts[k] + t + (c + t) * q] = 1 }; c += size[k] }
            forwardSolve(&b, columns: columns)
            c = 0
            for k in first..<last {
                let p = size[k]
                var m = [Double](repeating: 0, count: p * p)
                for s in 0..<p { for t in 0...s {
                    var dot = 0.0
                    for i in 0..<q { dot += b[i + (c + t) * q] * b[i + (c + s) * q] }
                    m[t + s * p] = dot
                    m[s + t * p] = dot
                } }
                out.append(m)
                c += p
            }
            first = last
        }
        return out
    }
}

/// A CHOLMOD sparse Cholesky factor `P A P' = L L'` of a symmetric positive-definite matrix
/// with a fixed sparsity pattern.
///
/// The symbolic analysis (ordering, elimination tree, supernodes) is done once, in `init`;
/// `factorize(values:)` refactors numerically for new values on the same pattern, which is
/// what the optimiser needs for every θ. Only this file calls CHOLMOD.
final class SparseCholesky {
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
    init(dimension: Int, columnStarts: [Int], rowIndices: [Int], ordering: FillReducingOrdering) throws {
        self.dimension = dimension
        common = .allocate(capacity: 1)
        cholmod_l_start(common)
        common.pointee.print = 0
        common.pointee.final_ll = 1          // simplicial factors in L L' form, like supernodal ones
        common.pointee.quick_return_if_not_posdef = 1
        switch ordering {
        case .best:
            break
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
        for k in 0..<nnz { i[k] = rowIndices[k]; x[k] = 0 }
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

    /// The number of nonzeros in L predicted by the analysis.
    var factorNonzeros: Double { common.pointee.lnz }

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

