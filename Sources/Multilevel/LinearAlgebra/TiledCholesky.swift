import CCHOLMOD
import Foundation

/// Dense Cholesky factorisation, symmetric rank-k update and product, on this package's threads,
/// cut into fixed tiles so that the result is bit for bit the same whatever the number of
/// threads; and the inverse from a factor (one dpotri call), for the selected inverses.
///
/// OpenBLAS runs on one thread here (`useOneThreadInBLAS`: its own parallel `dpotrf` rounds
/// differently with each thread count). Each tile below is one single-threaded BLAS call, the
/// tiles are fixed by the matrix size alone, and threads only choose which tile to do next;
/// so every entry is computed by the same sequence of operations on any number of threads.
enum TiledCholesky {
    /// Columns per tile: large enough for BLAS to run near its peak, small enough to share out.
    static let tile = 192

    /// Factors the lower triangle of the n × n column-major `a` in place (A = LL'); false if A
    /// is not positive definite.
    static func factor(_ a: UnsafeMutablePointer<Double>, order n: Int, threads: Int) -> Bool {
        let nb = tile, tiles = (n + nb - 1) / nb
        var lda = Int32(n)
        for k in 0..<tiles {
            let k0 = k * nb
            var kb = Int32(min(nb, n - k0)), info: Int32 = 0
            var lower = CChar(UInt8(ascii: "L"))
            dpotrf_(&lower, &kb, a + k0 + k0 * n, &lda, &info)
            guard info == 0 else { return false }
            let rest = k + 1..<tiles
            guard !rest.isEmpty else { break }
            // Panel below the diagonal tile: A₂₁ ← A₂₁ L₁₁⁻ᵀ, a row tile at a time.
            parallel(rest, threads: threads) { i in
                let i0 = i * nb
                var m = Int32(min(nb, n - i0)), one = 1.0
                var side = CChar(UInt8(ascii: "R")), uplo = CChar(UInt8(ascii: "L")),
                    trans = CChar(UInt8(ascii: "T")), diag = CChar(UInt8(ascii: "N"))
                var lda = lda, kb = kb
                dtrsm_(&side, &uplo, &trans, &diag, &m, &kb, &one, a + k0 + k0 * n, &lda, a + i0 + k0 * n, &lda)
            }
            // Trailing matrix: A₂₂ ← A₂₂ − A₂₁A₂₁', a column tile at a time.
            parallel(rest, threads: threads) { j in
                subtract(panel: a + k0 * n, rows: n, columns: Int(kb), from: a, leading: n, columnTile: j)
            }
        }
        return true
    }

    /// C ← C − PP' on C's lower triangle (n × n, column-major), P an n × k column-major panel
    /// with leading dimension n.
    static func subtract(panel p: UnsafePointer<Double>, columns k: Int, from c: UnsafeMutablePointer<Double>,
                         order n: Int, threads: Int) {
        let tiles = (n + tile - 1) / tile
        parallel(0..<tiles, threads: threads) { j in
            subtract(panel: p, rows: n, columns: k, from: c, leading: n, columnTile: j)
        }
    }

    /// Replaces L (the lower triangle of the n × n column-major `a`, a Cholesky factor that
    /// succeeded) by the lower triangle of (LL')⁻¹: LAPACK dpotri, for selected inverses.
    static func invertFromFactor(_ a: inout [Double], order n: Int) {
        var size = Int32(n), info: Int32 = 0
        var lower = CChar(UInt8(ascii: "L"))
        dpotri_(&lower, &size, &a, &size, &info)
        precondition(info == 0, "dpotri failed on a factor that had succeeded")
    }

    /// H = C V for a dense symmetric C (n × n, both triangles stored) and V (n × k), by dgemm on
    /// row tiles of H on up to `threads` threads; each tile's result does not depend on the count.
    static func multiply(_ c: UnsafePointer<Double>, _ v: UnsafePointer<Double>, columns k: Int,
                         into h: UnsafeMutablePointer<Double>, order n: Int, threads: Int) {
        let tiles = (n + tile - 1) / tile
        parallel(0..<tiles, threads: threads) { i in
            let i0 = i * tile
            var rows = Int32(min(tile, n - i0)), kk = Int32(k), nn = Int32(n), ld = Int32(n)
            var one = 1.0, zero = 0.0
            var notrans = CChar(UInt8(ascii: "N"))
            dgemm_(&notrans, &notrans, &rows, &kk, &nn, &one, c + i0, &ld, v, &ld, &zero, h + i0, &ld)
        }
    }

    /// Column tile j of C −= PP' (rows from the tile's first column down): dsyrk on the diagonal
    /// tile, dgemm below it. P's row r is at p + r.
    private static func subtract(panel p: UnsafePointer<Double>, rows n: Int, columns k: Int,
                                 from c: UnsafeMutablePointer<Double>, leading ldc: Int, columnTile j: Int) {
        let j0 = j * tile
        var jb = Int32(min(tile, n - j0)), kk = Int32(k), ld = Int32(ldc), ldp = Int32(n)
        var alpha = -1.0, beta = 1.0
        var lower = CChar(UInt8(ascii: "L")), notrans = CChar(UInt8(ascii: "N")), trans = CChar(UInt8(ascii: "T"))
        dsyrk_(&lower, &notrans, &jb, &kk, &alpha, p + j0, &ldp, &beta, c + j0 + j0 * ldc, &ld)
        var below = Int32(n - j0 - Int(jb))
        if below > 0 {
            dgemm_(&notrans, &trans, &below, &jb, &kk, &alpha, p + j0 + Int(jb), &ldp, p + j0, &ldp, &beta,
                   c + j0 + Int(jb) + j0 * ldc, &ld)
        }
    }

    /// Runs `body` for each index of `range` on up to `threads` threads, indices taken in order.
    static func parallel(_ range: Range<Int>, threads: Int, _ body: (Int) -> Void) {
        let workers = max(1, min(threads, range.count))
        if workers == 1 { for i in range { body(i) }; return }
        let lock = NSLock()
        var next = range.lowerBound
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                lock.lock()
                let i = next
                next += 1
                lock.unlock()
                guard i < range.upperBound else { return }
                body(i)
            }
        }
    }
}

/// Runs OpenBLAS's kernels on one thread. OpenBLAS cuts `dpotrf` into blocks by its thread
/// count, so the last bits of a factor depend on how many threads it runs on — and mpirun's
/// core binding changes that count from rank to rank. With one BLAS thread a fit, a bootstrap
/// replicate and a profile point are bit for bit the same on any rank; the cores are used by
/// this package's own threads instead (`TiledCholesky`, reading, replicates).
public func useOneThreadInBLAS() { openblas_set_num_threads(1) }
