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
}

private enum CrossedFormula { static let text = "y ~ x + w + (1 + x | A) + (1 | B)" }
