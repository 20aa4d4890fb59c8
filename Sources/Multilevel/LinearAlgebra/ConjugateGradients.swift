import CCHOLMOD
import Foundation

/// Preconditioned conjugate gradients for A x = b with k right-hand sides at once (each its own
/// iteration; the products with A shared), keeping each one's Lanczos coefficients.
///
/// With M = LL' the preconditioner, PCG on A x = b is CG on Â = L⁻¹AL⁻ᵀ with right-hand side
/// L⁻¹b, and its step lengths α_i and ratios β_i are those of the Lanczos process on Â started
/// at L⁻¹b (Saad, *Iterative Methods for Sparse Linear Systems*, §6.7.3): the tridiagonal T has
/// T₁₁ = 1/α₀, T_ii = 1/α_i + β_{i−1}/α_{i−1} and T_{i−1,i} = √β_{i−1}/α_{i−1}. So one run gives
/// both the solve and the Gauss quadrature of (L⁻¹b)'f(Â)(L⁻¹b) (`LanczosQuadrature`).
///
/// Every vector operation runs over the rows in order, for all columns at once, so each column's
/// sums are the same whatever k, the other columns, or the threads of the products.
enum ConjugateGradients {
    struct Result {
        /// The solutions, row-interleaved (q × k).
        var x: [Double]
        /// Iterations (products with A) each column took.
        var iterations: [Int]
        /// Whether each column reached the tolerance (else it stopped at the iteration limit).
        var converged: [Bool]
        /// Each column's Lanczos tridiagonal: diagonal and off-diagonal (empty unless asked for).
        var tridiagonals: [(diagonal: [Double], offDiagonal: [Double])]
    }

    /// `solve` on blocks of at most `block` columns at a time, the results put back together: the
    /// same bits as one call (each column's iteration is its own), with working vectors small
    /// enough to stay in cache when k is large.
    static func solve<P: SolvePreconditioner>(_ a: SystemOperator, preconditioner m: P, rhs b: [Double], vectors k: Int,
                      tolerance: Double, maxIterations: Int, lanczos: Bool, block: Int) -> Result {
        guard k > block else {
            return solve(a, preconditioner: m, rhs: b, vectors: k, tolerance: tolerance, maxIterations: maxIterations, lanczos: lanczos)
        }
        let q = a.dimension
        var out = Result(x: [Double](repeating: 0, count: q * k), iterations: [], converged: [], tridiagonals: [])
        for first in stride(from: 0, to: k, by: block) {
            let kb = min(block, k - first)
            var part = [Double](repeating: 0, count: q * kb)
            for i in 0..<q { for c in 0..<kb { part[i * kb + c] = b[i * k + first + c] } }
            let r = solve(a, preconditioner: m, rhs: part, vectors: kb, tolerance: tolerance, maxIterations: maxIterations,
                          lanczos: lanczos)
            for i in 0..<q { for c in 0..<kb { out.x[i * k + first + c] = r.x[i * kb + c] } }
            out.iterations += r.iterations
            out.converged += r.converged
            out.tridiagonals += r.tridiagonals
        }
        return out
    }

    /// Solves A x_j = b_j until ‖b_j − Ax_j‖ ≤ tolerance ‖b_j‖, from x = 0.
    static func solve<P: SolvePreconditioner>(_ a: SystemOperator, preconditioner m: P, rhs b: [Double], vectors k: Int,
                      tolerance: Double, maxIterations: Int, lanczos: Bool) -> Result {
        let q = a.dimension
        var x = [Double](repeating: 0, count: q * k)
        var r = b
        var z = r
        z.withUnsafeMutableBufferPointer { m.solve($0.baseAddress!, vectors: k, only: nil) }
        var p = z
        var rho = [Double](repeating: 0, count: k), bNorm = [Double](repeating: 0, count: k)
        for i in 0..<q { for j in 0..<k {
            rho[j] += r[i * k + j] * z[i * k + j]
            bNorm[j] += b[i * k + j] * b[i * k + j]
        } }
        bNorm = bNorm.map { $0.squareRoot() }
        var iterations = [Int](repeating: 0, count: k)
        var converged = bNorm.map { $0 == 0 }
        var alphas = [[Double]](repeating: [], count: k), betas = [[Double]](repeating: [], count: k)
        var active = (0..<k).filter { !converged[$0] }
        var iteration = 0
        while !active.isEmpty && iteration < maxIterations {
            iteration += 1
            let ka = active.count
            // w = A p on the active columns.
            var pa: [Double]
            if ka == k { pa = p } else {
                pa = [Double](repeating: 0, count: q * ka)
                for i in 0..<q { for (c, j) in active.enumerated() { pa[i * ka + c] = p[i * k + j] } }
            }
            let w = a.apply(pa, vectors: ka)
            var pw = [Double](repeating: 0, count: ka)
            for i in 0..<q { for c in 0..<ka { pw[c] += pa[i * ka + c] * w[i * ka + c] } }
            let alpha = (0..<ka).map { rho[active[$0]] / pw[$0] }
            var rr = [Double](repeating: 0, count: ka)
            for i in 0..<q {
                for (c, j) in active.enumerated() {
                    x[i * k + j] += alpha[c] * pa[i * ka + c]
                    r[i * k + j] -= alpha[c] * w[i * ka + c]
                    rr[c] += r[i * k + j] * r[i * k + j]
                }
            }
            for (c, j) in active.enumerated() {
                iterations[j] = iteration
                if lanczos { alphas[j].append(alpha[c]) }
                if !(alpha[c].isFinite && alpha[c] > 0) || rr[c].squareRoot() <= tolerance * bNorm[j] {
                    converged[j] = alpha[c].isFinite && alpha[c] > 0
                    if !converged[j] { iterations[j] = -iteration }   // A not positive definite along p: flagged
                }
            }
            let still = active.enumerated().filter { !converged[$0.element] && iterations[$0.element] > 0 }
            if still.isEmpty { break }
            // z = M⁻¹r, β = r'z / ρ, p = z + βp on the columns still iterating.
            if still.count == k {
                z = r
                z.withUnsafeMutableBufferPointer { m.solve($0.baseAddress!, vectors: k, only: nil) }
            } else {
                for (_, j) in still {
                    for i in 0..<q { z[i * k + j] = r[i * k + j] }
                }
                z.withUnsafeMutableBufferPointer { buf in
                    for (_, j) in still { m.solve(buf.baseAddress!, vectors: k, only: j) }
                }
            }
            var rhoNew = [Double](repeating: 0, count: still.count)
            for i in 0..<q { for (c, s) in still.enumerated() { rhoNew[c] += r[i * k + s.element] * z[i * k + s.element] } }
            for (c, s) in still.enumerated() {
                let j = s.element
                let beta = rhoNew[c] / rho[j]
                rho[j] = rhoNew[c]
                if lanczos { betas[j].append(beta) }
                for i in 0..<q { p[i * k + j] = z[i * k + j] + beta * p[i * k + j] }
            }
            active = still.map(\.element)
        }
        var tridiagonals: [(diagonal: [Double], offDiagonal: [Double])] = []
        if lanczos {
            for j in 0..<k {
                let al = alphas[j], be = betas[j]
                var d: [Double] = [], e: [Double] = []
                for i in al.indices {
                    d.append(1 / al[i] + (i > 0 ? be[i - 1] / al[i - 1] : 0))
                    if i > 0 { e.append(be[i - 1].squareRoot() / al[i - 1]) }
                }
                tridiagonals.append((d, e))
            }
        }
        return Result(x: x, iterations: iterations.map(abs), converged: converged, tridiagonals: tridiagonals)
    }
}

/// Gauss quadrature from a Lanczos tridiagonal T started at v/‖v‖: v'f(Â)v ≈ ‖v‖² e₁'f(T)e₁ =
/// ‖v‖² Σ_m τ_m² f(λ_m), with T = QΛQ' (LAPACK's dstev) and τ_m = Q₁m (Golub and Meurant, 2010).
enum LanczosQuadrature {
    /// e₁'log(T)e₁; nil if T has an eigenvalue ≤ 0 (A not positive definite to the iteration's precision).
    static func logQuadratic(diagonal: [Double], offDiagonal: [Double]) -> Double? {
        var n = Int32(diagonal.count)
        guard n > 0 else { return nil }
        if n == 1 { return diagonal[0] > 0 ? log(diagonal[0]) : nil }
        var d = diagonal, e = offDiagonal
        var zv = [Double](repeating: 0, count: Int(n) * Int(n))
        var work = [Double](repeating: 0, count: max(1, 2 * Int(n) - 2))
        var info: Int32 = 0
        var jobz = Int8(UInt8(ascii: "V"))
        var ldz = n
        dstev_(&jobz, &n, &d, &e, &zv, &ldz, &work, &info)
        guard info == 0 else { return nil }
        var sum = 0.0
        for i in 0..<Int(n) {
            guard d[i] > 0 else { return nil }
            let tau = zv[i * Int(n)]
            sum += tau * tau * log(d[i])
        }
        return sum
    }
}
