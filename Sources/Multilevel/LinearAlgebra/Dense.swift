import CCHOLMOD

/// Small dense matrices, column-major: the survey variance's per-cluster d × d blocks, the GLMM's
/// and Satterthwaite's Hessians, the F-tests' Var(Lβ̂), Kenward–Roger's (q + p)-square algebra.
enum Dense {
    /// op(A) op(B) by BLAS dgemm, op(X) = X or X' (`transposeA`/`B`); op(A) is m × k, op(B) k × n.
    static func product(_ a: [Double], _ b: [Double], _ m: Int, _ k: Int, _ n: Int,
                        transposeA: Bool = false, transposeB: Bool = false) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        guard m > 0, n > 0, k > 0 else { return out }
        var ta: CChar = transposeA ? 84 : 78, tb: CChar = transposeB ? 84 : 78   // "T", "N"
        var mm = Int32(m), nn = Int32(n), kk = Int32(k), one = 1.0, zero = 0.0
        var lda = Int32(transposeA ? k : m), ldb = Int32(transposeB ? n : k), ldc = Int32(m)
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in out.withUnsafeMutableBufferPointer { pc in
            dgemm_(&ta, &tb, &mm, &nn, &kk, &one, pa.baseAddress, &lda, pb.baseAddress, &ldb, &zero, pc.baseAddress, &ldc)
        } } }
        return out
    }

    /// A⁻¹ by Gauss–Jordan elimination with partial pivoting (R's `solve`), nil if A is singular.
    static func inverse(_ a: [Double], order n: Int) -> [Double]? {
        var m = a, inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inv[i + i * n] = 1 }
        let scale = a.map(abs).max() ?? 0
        for c in 0..<n {
            guard let pivot = (c..<n).max(by: { abs(m[$0 + c * n]) < abs(m[$1 + c * n]) }),
                  abs(m[pivot + c * n]) > 1e-14 * scale else { return nil }
            if pivot != c {
                for k in 0..<n {
                    m.swapAt(c + k * n, pivot + k * n)
                    inv.swapAt(c + k * n, pivot + k * n)
                }
            }
            let d = m[c + c * n]
            for k in 0..<n { m[c + k * n] /= d; inv[c + k * n] /= d }
            for r in 0..<n where r != c {
                let f = m[r + c * n]
                if f == 0 { continue }
                for k in 0..<n { m[r + k * n] -= f * m[c + k * n]; inv[r + k * n] -= f * inv[c + k * n] }
            }
        }
        return inv
    }

    /// x'My for n × n M: Σ_a Σ_b x_a M_ab y_b, a outer (a with x_a = 0 skipped), b inner.
    static func bilinear(_ x: [Double], _ m: [Double], _ y: [Double], _ n: Int) -> Double {
        var sum = 0.0
        for a in 0..<n where x[a] != 0 { for b in 0..<n { sum += x[a] * m[a + b * n] * y[b] } }
        return sum
    }

    /// tr(AB) for n × n A and B: Σ_i Σ_j A_ij B_ji, i outer.
    static func traceOfProduct(_ a: [Double], _ b: [Double], _ n: Int) -> Double {
        var sum = 0.0
        for i in 0..<n { for j in 0..<n { sum += a[i + j * n] * b[j + i * n] } }
        return sum
    }

    /// A⁻¹ for symmetric positive definite A (LAPACK dpotrf, dpotri); nil if A is not.
    static func inverseOfPositiveDefinite(_ a: [Double], _ n: Int) -> [Double]? {
        var m = a, uplo: CChar = 76, nn = Int32(n), lda = Int32(max(1, n)), info: Int32 = 0
        dpotrf_(&uplo, &nn, &m, &lda, &info)
        guard info == 0 else { return nil }
        dpotri_(&uplo, &nn, &m, &lda, &info)
        guard info == 0 else { return nil }
        for j in 0..<n { for i in 0..<j { m[i + j * n] = m[j + i * n] } }
        return m
    }

    /// The inverse of a symmetric matrix whose smallest |eigenvalue| exceeds `singularBelow`,
    /// else its Moore–Penrose inverse with eigenvalues below √ε times the largest dropped
    /// (pbkrtest's choice between `solve` and `MASS::ginv`); nil if the eigensolver fails.
    static func symmetricPseudoInverse(_ a: [Double], _ n: Int, singularBelow: Double) -> [Double]? {
        guard let (values, vectors) = symmetricEigen(a, n) else { return nil }
        let largest = values.map(abs).max() ?? 0
        let singular = (values.map(abs).min() ?? 0) <= singularBelow
        var out = [Double](repeating: 0, count: n * n)
        for k in 0..<n where !singular || abs(values[k]) > Double.ulpOfOne.squareRoot() * largest {
            for j in 0..<n { for i in 0..<n { out[i + j * n] += vectors[i + k * n] * vectors[j + k * n] / values[k] } }
        }
        return out
    }

    /// The eigenvalues (descending, as R's `eigen`) and eigenvectors (columns, in that order) of a
    /// symmetric n × n matrix; nil if LAPACK's dsyev fails.
    static func symmetricEigen(_ a: [Double], _ n: Int) -> (values: [Double], vectors: [Double])? {
        guard n > 0 else { return ([], []) }
        var m = a, w = [Double](repeating: 0, count: n), info: Int32 = 0
        var jobz: CChar = 86, uplo: CChar = 76   // "V", "L"
        var nn = Int32(n), lda = Int32(n), lwork = Int32(max(1, 3 * n - 1) + 64 * n)
        var work = [Double](repeating: 0, count: Int(lwork))
        dsyev_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &info)
        guard info == 0 else { return nil }
        // dsyev sorts ascending: reverse values and vector columns.
        var vectors = [Double](repeating: 0, count: n * n)
        for j in 0..<n { for i in 0..<n { vectors[i + j * n] = m[i + (n - 1 - j) * n] } }
        return (w.reversed(), vectors)
    }

    /// A (m × k) times B (k × n).
    static func multiply<A: Collection, B: Collection>(_ a: A, _ b: B, _ m: Int, _ k: Int, _ n: Int) -> [Double]
        where A.Element == Double, A.Index == Int, B.Element == Double, B.Index == Int {
        var out = [Double](repeating: 0, count: m * n)
        let a0 = a.startIndex, b0 = b.startIndex
        for j in 0..<n { for t in 0..<k { let x = b[b0 + t + j * k]; if x == 0 { continue }; for i in 0..<m { out[i + j * m] += a[a0 + i + t * m] * x } } }
        return out
    }

    static func transpose(_ a: [Double], _ m: Int, _ n: Int) -> [Double] {
        var t = [Double](repeating: 0, count: m * n)
        for j in 0..<n { for i in 0..<m { t[j + i * n] = a[i + j * m] } }
        return t
    }

    /// L with LL' = A (lower, column-major, 0 above the diagonal); nil unless A is positive definite.
    static func lowerCholesky(_ a: [Double], _ n: Int) -> [Double]? {
        var l = a
        guard l.withUnsafeMutableBufferPointer({ DenseCholesky.lowerInPlace($0, offset: 0, order: n) }) else { return nil }
        for j in 0..<n { for i in 0..<j { l[i + j * n] = 0 } }
        return l
    }

    /// L⁻¹B for lower-triangular L (n × n) and B (n × columns).
    static func solveLower(_ l: [Double], _ n: Int, _ b: [Double], _ columns: Int) -> [Double] {
        var x = b
        for c in 0..<columns {
            for i in 0..<n {
                var v = x[i + c * n]
                for t in 0..<i { v -= l[i + t * n] * x[t + c * n] }
                x[i + c * n] = v / l[i + i * n]
            }
        }
        return x
    }

    /// (LL')⁻¹B.
    static func solveCholesky(_ l: [Double], _ n: Int, _ b: [Double], columns: Int = 1) -> [Double] {
        var x = solveLower(l, n, b, columns)
        for c in 0..<columns {
            for i in stride(from: n - 1, through: 0, by: -1) {
                var v = x[i + c * n]
                for t in (i + 1)..<max(i + 1, n) { v -= l[t + i * n] * x[t + c * n] }
                x[i + c * n] = v / l[i + i * n]
            }
        }
        return x
    }
}
