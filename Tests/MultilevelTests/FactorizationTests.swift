import XCTest
@testable import Multilevel

/// The blocked factorisation (dense Schur complement) and CHOLMOD's give the same deviance,
/// the same solution of the penalised least-squares problem and the same conditional modes.
final class FactorizationTests: XCTestCase {
    func crossProducts(_ dataset: String, _ formula: String) throws -> CrossProducts {
        let data = try openTable(path: Fixtures.path(dataset), table: nil)
        return try ModelFrame.scan(Formula.parse(formula), source: data).crossProducts()
    }

    /// At θ away from the optimum (so every part of the factor matters), for designs where the
    /// blocked form applies: scalar first term (InstEval, Penicillin) and a random slope first
    /// term crossed with another factor (a 2 × 2 block per level, on simulated data).
    func testBlockedAndSparseFactorizationsAgree() throws {
        let simulated = FileManager.default.temporaryDirectory.appendingPathComponent("mlm-factorization-\(UUID().uuidString).h5").path
        defer { unlink(simulated) }
        try Simulation(design: .crossed, rows: 6_000, seed: 5).write(to: simulated)
        let cases: [(CrossProducts, [Double])] = [
            (try crossProducts("insteval.h5", "y ~ 1 + service*dept + (1|s) + (1|d)"), [0.31, 0.52]),
            (try crossProducts("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)"), [1.7, 3.1]),
            (try ModelFrame.scan(Formula.parse(CrossedFormula.text), source: openTable(path: simulated, table: nil)).crossProducts(),
             [0.8, 0.25, 0.3, 0.45]),
        ]
        for (cp, theta) in cases {
            for reml in [true, false] {
                let sparse = try PenalizedLeastSquares(cp, reml: reml, ordering: .amd)
                XCTAssertFalse(sparse.isBlocked)
                let b = try XCTUnwrap(sparse.evaluate(theta))
                let beta = [Double](repeating: 0.1, count: cp.fixedCount)
                let ub = sparse.conditionalModes(theta, b, beta: beta)
                // S −= W W' scattered entry by entry, and by dsyrk on gathered panels.
                for schur in [BlockedCholesky.Formation.scatter, .gather] {
                    let blocked = try PenalizedLeastSquares(cp, reml: reml, ordering: .natural, schur: schur)
                    XCTAssertTrue(blocked.isBlocked, "\(cp.terms.map(\.group))")
                    let a = try XCTUnwrap(blocked.evaluate(theta))
                    XCTAssertEqual(a.deviance, b.deviance, accuracy: 1e-9 * abs(b.deviance), "\(schur)")
                    XCTAssertEqual(a.logDetL2, b.logDetL2, accuracy: 1e-9 * max(1, abs(b.logDetL2)), "\(schur)")
                    XCTAssertEqual(a.penalizedRSS, b.penalizedRSS, accuracy: 1e-9 * b.penalizedRSS, "\(schur)")
                    let ua = blocked.conditionalModes(theta, a, beta: beta)
                    let scale = ub.map(abs).max() ?? 1
                    XCTAssertLessThan(zip(ua, ub).map { abs($0 - $1) }.max() ?? 0, 1e-9 * scale, "\(schur)")
                    // The diagonal blocks of the inverse: closed form against CHOLMOD's block solves.
                    if reml {
                        let ia = blocked.inverseDiagonalBlocks(), ib = sparse.inverseDiagonalBlocks()
                        XCTAssertEqual(ia.count, ib.count)
                        let worst = zip(ia, ib).map { zip($0, $1).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0 }.max() ?? 0
                        XCTAssertLessThan(worst, 1e-8, "inverse blocks, \(schur)")
                    }
                }
            }
        }
    }

    /// Where the remainder is sparse (1,000 schools, each class in one) or there is one term, CHOLMOD is used.
    func testSparseRemaindersStayWithCholmod() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mlm-nested-\(UUID().uuidString).h5").path
        defer { unlink(path) }
        let simulation = try Simulation(design: .nested3, rows: 20_000, seed: 2)
        try simulation.write(to: path)
        let nested = try ModelFrame.scan(Formula.parse(simulation.formula), source: openTable(path: path, table: nil)).crossProducts()
        XCTAssertEqual(nested.terms.last?.levels.count, 1_000)
        XCTAssertFalse(try PenalizedLeastSquares(nested, reml: true, ordering: .natural).isBlocked)
        let single = try crossProducts("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)")
        XCTAssertFalse(try PenalizedLeastSquares(single, reml: true, ordering: .natural).isBlocked)
    }


    /// The tiled dense Cholesky factor equals the plain one to rounding, and is bit for bit the
    /// same on 1, 2 and 5 threads (n = 500 spans three tiles of 192, the last one partial); so is
    /// the tiled inverse from it, which inverts A.
    func testTiledCholeskyIsTheSameOnAnyNumberOfThreads() {
        let n = 500
        var random = Xoshiro256(seed: 3)
        let g = (0..<(n * 40)).map { _ in random.nextNormal() }
        var a = [Double](repeating: 0, count: n * n)
        for j in 0..<n { for i in j..<n {
            var s = i == j ? Double(n) : 0
            for k in 0..<40 { s += g[i + k * n] * g[j + k * n] }
            a[i + j * n] = s
            a[j + i * n] = s
        } }
        var results: [[Double]] = []
        for threads in [1, 2, 5] {
            var l = a
            XCTAssertTrue(l.withUnsafeMutableBufferPointer { TiledCholesky.factor($0.baseAddress!, order: n, threads: threads) })
            results.append((0..<n).flatMap { j in (j..<n).map { l[$0 + j * n] } })
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
        let r = DenseCholesky.upper(a, order: n)!
        let plain = (0..<n).flatMap { j in (j..<n).map { r[j + $0 * n] } }
        let worst = zip(plain, results[0]).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-9 * Double(n))
        var indefinite = a
        indefinite[300 + 300 * n] = -1
        XCTAssertFalse(indefinite.withUnsafeMutableBufferPointer { TiledCholesky.factor($0.baseAddress!, order: n, threads: 2) })

        // The inverse from the factor: the same bits on 1, 2 and 5 threads, symmetric, and A C = I.
        var l = a
        XCTAssertTrue(l.withUnsafeMutableBufferPointer { TiledCholesky.factor($0.baseAddress!, order: n, threads: 2) })
        var inverses: [[Double]] = []
        for threads in [1, 2, 5] {
            var c = l
            TiledCholesky.invert(&c, order: n, threads: threads)
            inverses.append(c)
        }
        XCTAssertEqual(inverses[0], inverses[1])
        XCTAssertEqual(inverses[0], inverses[2])
        let c = inverses[0]
        var asymmetry = 0.0, residual = 0.0
        for j in 0..<n {
            for i in 0..<n {
                asymmetry = max(asymmetry, abs(c[i + j * n] - c[j + i * n]))
                var s = i == j ? -1.0 : 0
                for k in 0..<n { s += a[i + k * n] * c[k + j * n] }
                residual = max(residual, abs(s))
            }
        }
        XCTAssertEqual(asymmetry, 0)
        XCTAssertLessThan(residual, 1e-10)
    }
}

enum CrossedFormula { static let text = "y ~ x + w + (1 + x | A) + (1 | B)" }
