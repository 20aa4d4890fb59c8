import CCHOLMOD
import Foundation

/// Dense Cholesky factorisation, symmetric rank-k update, product, and the inverse from a factor
/// (for the selected inverses), on this package's threads, cut into fixed tiles so that the
/// result is bit for bit the same whatever the number of threads.
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

    /// Replaces a Cholesky factor L that succeeded (the lower triangle of the n × n column-major
    /// `a`) by (LL')⁻¹ in both triangles, for the selected inverses, on up to `threads` threads:
    /// X = L⁻¹ a column tile at a time (dtrtri on the diagonal tile, then dtrmm and dtrsm below
    /// it: each tile is L's trailing system on its own columns), then
    /// C = X'X a tile at a time (dgemm over the rows from the tile row down, dsyrk on the
    /// diagonal). These are LAPACK dpotri's two steps (dtrtri, dlauum) cut into tiles that do not
    /// depend on the threads; dpotri itself runs on one thread here (crossed 10^6, n = 2000:
    /// 111–134 ms). Besides `a`, it holds X (n² doubles).
    static func invert(_ a: inout [Double], order n: Int, threads: Int) {
        var x = [Double](repeating: 0, count: n * n)
        invert(&a, order: n, threads: threads, workspace: &x)
    }

    /// `invert` with X in `x` (n² doubles, overwritten where L⁻¹ lives; the rest must be 0, as
    /// a previous call with the same n leaves it): a caller that inverts again and again keeps
    /// both arrays, and the pages are not mapped afresh each time.
    static func invert(_ a: inout [Double], order n: Int, threads: Int, workspace x: inout [Double]) {
        precondition(x.count == n * n)
        let nb = tile, tiles = (n + nb - 1) / nb
        let ld = Int32(n)
        x.withUnsafeMutableBufferPointer { xb in
            a.withUnsafeBufferPointer { lb in
                let x = xb.baseAddress!, l = lb.baseAddress!
                parallel(0..<tiles, threads: threads) { j in
                    let j0 = j * nb, j1 = min(n, j0 + nb)
                    var jb = Int32(j1 - j0), below = Int32(n - j1), info: Int32 = 0, ld = ld
                    for col in j0..<j1 { for row in col..<n { x[row + col * n] = l[row + col * n] } }
                    var lower = CChar(UInt8(ascii: "L")), nonunit = CChar(UInt8(ascii: "N")), right = CChar(UInt8(ascii: "R")),
                        left = CChar(UInt8(ascii: "L")), notrans = CChar(UInt8(ascii: "N"))
                    dtrtri_(&lower, &nonunit, &jb, x + j0 + j0 * n, &ld, &info)
                    precondition(info == 0, "dtrtri failed on a factor that had succeeded")
                    guard below > 0 else { return }
                    // X[j1:, J] = −L[j1:, j1:]⁻¹ L[j1:, J] X_JJ.
                    var minusOne = -1.0, one = 1.0
                    dtrmm_(&right, &lower, &notrans, &nonunit, &below, &jb, &minusOne, x + j0 + j0 * n, &ld, x + j1 + j0 * n, &ld)
                    dtrsm_(&left, &lower, &notrans, &nonunit, &below, &jb, &one, l + j1 + j1 * n, &ld, x + j1 + j0 * n, &ld)
                }
            }
        }
        var pairs: [(Int, Int)] = []
        for i in 0..<tiles { for j in 0...i { pairs.append((i, j)) } }
        x.withUnsafeBufferPointer { xb in
            a.withUnsafeMutableBufferPointer { cb in
                let x = xb.baseAddress!, c = cb.baseAddress!
                parallel(0..<pairs.count, threads: threads) { k in
                    let (i, j) = pairs[k]
                    let i0 = i * nb, j0 = j * nb, i1 = min(n, i0 + nb), j1 = min(n, j0 + nb)
                    var ib = Int32(i1 - i0), jb = Int32(j1 - j0), depth = Int32(n - i0), ld = ld
                    var one = 1.0, zero = 0.0
                    var trans = CChar(UInt8(ascii: "T")), notrans = CChar(UInt8(ascii: "N")), lower = CChar(UInt8(ascii: "L"))
                    // C_IJ = X[i0:, I]' X[i0:, J] (X is 0 above its diagonal).
                    if i == j {
                        dsyrk_(&lower, &trans, &jb, &depth, &one, x + i0 + j0 * n, &ld, &zero, c + j0 + j0 * n, &ld)
                        for col in j0..<j1 { for row in (col + 1)..<max(col + 1, j1) { c[col + row * n] = c[row + col * n] } }
                    } else {
                        dgemm_(&trans, &notrans, &ib, &jb, &depth, &one, x + i0 + i0 * n, &ld, x + i0 + j0 * n, &ld, &zero,
                               c + i0 + j0 * n, &ld)
                        for col in j0..<j1 { for row in i0..<i1 { c[col + row * n] = c[row + col * n] } }
                    }
                }
            }
        }
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
///
/// OpenBLAS's pthread build starts its worker threads when it is loaded, and an idle worker
/// spins on `sched_yield` for about 0.1 s before it sleeps: on two cores that took a core from
/// the reading threads of a short fit (InstEval, 0.26 s → 0.23 s without it). The workers are
/// stopped here through `blas_thread_shutdown_`, OpenBLAS's own fork handler, looked up at run
/// time because OpenBLAS's serial and OpenMP builds do not have it.
public func useOneThreadInBLAS() {
    openblas_set_num_threads(1)
    if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") {
        _ = unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)()
    }
}
