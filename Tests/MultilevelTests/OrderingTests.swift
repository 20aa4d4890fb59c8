import Foundation
import XCTest
@testable import Multilevel

/// `--ordering auto` and the memory check: the factorisation chosen by predicted cost, the
/// predictions against the factors, and the refusal of a factor that cannot fit.
final class OrderingTests: ScratchDirectoryTestCase {
    func crossProducts(_ path: String, _ formula: String) throws -> CrossProducts {
        try ModelFrame.scan(Formula.parse(formula), source: openTable(path: path, table: nil)).crossProducts()
    }

    func simulated(_ design: SimulationDesign, rows: Int, seed: UInt64 = 3) throws -> (String, String) {
        let path = temporary("\(design.rawValue)-\(rows).h5")
        let simulation = try Simulation(design: design, rows: rows, seed: seed)
        try simulation.write(to: path)
        return (path, simulation.formula)
    }

    /// Crossed designs (InstEval, simulated crossed) take the blocked path; a nested design and a
    /// single term take CHOLMOD, whose nested factor has no fill; the choice is the same each time.
    func testAutoPicksBlockedOnCrossedAndCholmodOnNested() throws {
        let insteval = try crossProducts(Fixtures.path("insteval.h5"), "y ~ 1 + service*dept + (1|s) + (1|d)")
        let (crossedPath, crossedFormula) = try simulated(.crossed, rows: 6_000)
        let crossed = try crossProducts(crossedPath, crossedFormula)
        for (name, cp) in [("insteval", insteval), ("crossed", crossed)] {
            for inverse in [true, false] {
                let pls = try PenalizedLeastSquares(cp, reml: true, ordering: .auto, needsInverse: inverse)
                XCTAssertEqual(pls.factorization, .blocked, "\(name), gradient \(inverse)")
                XCTAssertTrue(pls.isBlocked)
            }
        }
        let (nestedPath, nestedFormula) = try simulated(.nested3, rows: 20_000)
        let nested = try crossProducts(nestedPath, nestedFormula)
        let sleepstudy = try crossProducts(Fixtures.path("sleepstudy.csv"), "Reaction ~ Days + (Days | Subject)")
        for (name, cp) in [("nested3", nested), ("sleepstudy", sleepstudy)] {
            let choices = try (0..<2).map { _ in try PenalizedLeastSquares(cp, reml: true, ordering: .auto).factorization }
            guard case .cholmod = choices[0] else { return XCTFail("\(name): \(choices[0])") }
            XCTAssertEqual(choices[0], choices[1], name)
        }
        // The fit records the resolved choice, which refits reuse.
        let fit = try LinearMixedModel.fit(crossed)
        XCTAssertEqual(fit.factorization, .blocked)
        XCTAssertEqual(fit.ordering, .auto)
    }

    /// CHOLMOD's predicted nnz(L) (from the one-pass survey and from each ordering's own analysis)
    /// is the number of nonzeros of the numeric factor; the blocked path's closed-form flops are
    /// at least CHOLMOD's natural count, the same elimination with a sparser S.
    func testPredictedNonzerosMatchTheFactor() throws {
        let (nestedPath, nestedFormula) = try simulated(.nested3, rows: 4_000)
        let (crossedPath, crossedFormula) = try simulated(.crossed, rows: 4_000)
        let (mmPath, mmFormula) = try simulated(.crossedMultimember, rows: 3_000)
        let cases: [(String, CrossProducts, [Double])] = [
            ("nested3", try crossProducts(nestedPath, nestedFormula), [0.6, 0.4]),
            ("crossed", try crossProducts(crossedPath, crossedFormula), [0.8, 0.25, 0.3, 0.45]),
            ("crossed-mm", try crossProducts(mmPath, mmFormula), [0.8, 0.25, 0.3, 0.45, 0.6]),
        ]
        for (name, cp, theta) in cases {
            let orderings: [FillReducingOrdering] = [.natural, .amd, .metis]
            let survey = try SparseCholesky.survey(dimension: cp.randomEffectsCount, columnStarts: cp.zzColumnStarts,
                                                   rowIndices: cp.zzRowIndices, orderings: orderings)
            for (k, ordering) in orderings.enumerated() {
                let pls = try PenalizedLeastSquares(cp, reml: true, factorization: .cholmod(ordering))
                let sparse = try XCTUnwrap(pls.cholesky as? SparseCholesky)
                XCTAssertNotNil(pls.evaluate(theta), "\(name) \(ordering)")
                let actual = sparse.countNonzeroEntries()
                XCTAssertEqual(sparse.factorNonzeros, Double(actual), "\(name) \(ordering): predicted against the factor's nonzeros")
                XCTAssertEqual(survey[k].nonzeros, sparse.factorNonzeros, "\(name) \(ordering): survey against own analysis")
                XCTAssertEqual(survey[k].flops, sparse.flops, "\(name) \(ordering): flops")
                XCTAssertGreaterThan(sparse.factorBytes, 8 * sparse.factorNonzeros)
            }
            if let blocked = BlockedCholesky.cost(cp) {
                XCTAssertGreaterThanOrEqual(blocked.flops, survey[0].flops * (1 - 1e-12), name)
            }
            // The floor that lets `auto` skip the survey is below every ordering's count.
            let floor = FactorizationChoice.cholmodFlopLowerBound(cp)
            XCTAssertGreaterThan(floor, 0, name)
            for s in survey { XCTAssertLessThanOrEqual(floor, s.flops, "\(name) \(s.ordering)") }
        }
    }

    /// A × B fully crossed (every pair of levels meets, as in large crossed designs): no CHOLMOD
    /// ordering can beat the blocked path by its flop floor, so `auto` takes the blocked path
    /// without analysing them; on InstEval METIS might, so it is analysed (and loses on cost).
    func testSurveySkippedWhenNoOrderingCanBeatTheBlockedPath() throws {
        var csv = "y,x,A,B\n", state: UInt64 = 12345
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        for a in 0..<200 { for b in 0..<100 { csv += "\(uniform() + Double(a % 7) + Double(b % 5)),\(uniform()),a\(a),b\(b)\n" } }
        let path = temporary("crossed-full.csv")
        try csv.write(toFile: path, atomically: true, encoding: .utf8)
        let crossedLog = LogLines(), instevalLog = LogLines()
        let crossed = try crossProducts(path, "y ~ x + (1 | A) + (1 | B)")
        let pls = try PenalizedLeastSquares(crossed, reml: true, ordering: .auto, needsInverse: true, log: { crossedLog.append($0) })
        XCTAssertEqual(pls.factorization, .blocked)
        let lines = crossedLog.lines
        XCTAssertTrue(lines.contains { $0.hasPrefix("factorisation candidates cholmod-*: not analysed") }, "\(lines)")
        XCTAssertFalse(lines.contains { $0.hasPrefix("factorisation candidate cholmod-metis") }, "\(lines)")
        let insteval = try crossProducts(Fixtures.path("insteval.h5"), "y ~ 1 + service*dept + (1|s) + (1|d)")
        let chosen = try PenalizedLeastSquares(insteval, reml: false, ordering: .auto, needsInverse: true, log: { instevalLog.append($0) })
        XCTAssertEqual(chosen.factorization, .blocked)
        XCTAssertTrue(instevalLog.lines.contains { $0.hasPrefix("factorisation candidate cholmod-metis") }, "\(instevalLog.lines)")
    }

    /// `--max-memory 1M` on a small crossed fit: one line naming the terms and the predicted size,
    /// before the first evaluation (no trace line), exit status 1.
    func testMaxMemoryRefusesBeforeAnyEvaluation() throws {
        let (path, formula) = try simulated(.crossed, rows: 20_000)
        let run = try mlm(["fit", path, "--formula", formula, "--max-memory", "1M", "--verbose"])
        XCTAssertEqual(run.status, 1, run.stderr)
        let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("mlm: error:") }
        XCTAssertEqual(errors.count, 1, run.stderr)
        let line = String(errors.first ?? "")
        XCTAssertTrue(line.contains("(1 + x | A)") && line.contains("(1 | B)"), line)
        XCTAssertTrue(line.contains("1.00 MB is available (--max-memory)"), line)
        XCTAssertNotNil(line.range(of: #"needs [0-9.]+ MB"#, options: .regularExpression), line)
        XCTAssertFalse(run.stderr.contains("deviance"), "an evaluation ran: \(run.stderr)")
        XCTAssertTrue(run.stderr.contains("factorisation candidate blocked"), run.stderr)
        XCTAssertEqual(run.stdout, "")
        // An ordering given is checked too; a bad size is one line.
        let metis = try mlm(["fit", path, "--formula", formula, "--max-memory", "1M", "--ordering", "metis"])
        XCTAssertEqual(metis.status, 1)
        XCTAssertTrue(metis.stderr.hasPrefix("mlm: error: the fit needs") && metis.stderr.contains("cholmod-metis"), metis.stderr)
        let bad = try mlm(["fit", path, "--formula", formula, "--max-memory", "lots"])
        XCTAssertEqual(bad.stderr, "mlm: error: --max-memory must be a size such as 8G, 512M or 1000000 (bytes), not 'lots'\n")
        // With room, the same fit runs and reports its choice.
        let ok = try mlm(["fit", path, "--formula", formula, "--max-memory", "8G", "--verbose"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stderr.contains("factorisation: blocked"), ok.stderr)
    }

    func testMemorySizesParse() throws {
        XCTAssertEqual(try MemoryLimit.parse("8G"), 8 * 1024 * 1024 * 1024)
        XCTAssertEqual(try MemoryLimit.parse("512M"), 512 * 1024 * 1024)
        XCTAssertEqual(try MemoryLimit.parse("1.5k"), 1536)
        XCTAssertEqual(try MemoryLimit.parse("1000000"), 1_000_000)
        XCTAssertEqual(try MemoryLimit.parse("2Gi"), 2 * 1024 * 1024 * 1024)
        for bad in ["", "G", "-1G", "8X", "nan"] {
            XCTAssertTrue(message { try MemoryLimit.parse(bad) }.hasPrefix("--max-memory must be"), bad)
        }
    }

    /// crossed-mm at a small size fits and recovers its fixed effects (here A, B and the schools have
    /// 1,000 levels each and A comes first, so the blocked path applies; at full size the 20,000
    /// schools come first and share rows, and only CHOLMOD's orderings are candidates).
    func testCrossedMultipleMembershipFitsAtSmallSize() throws {
        let (path, formula) = try simulated(.crossedMultimember, rows: 20_000, seed: 1)
        let data = try openTable(path: path, table: nil)
        XCTAssertEqual(data.columnNames, ["y", "x", "w", "A", "B", "s1", "s2", "m1", "m2"])
        let fit = try LinearMixedModel.fit(formula, data: data)
        XCTAssertTrue(fit.optimizer.converged, "\(fit.notes)")
        XCTAssertEqual(Set(fit.terms.map(\.group)), ["mm(s1, s2, weights = cbind(m1, m2))", "A", "B"])
        for (name, truth) in [("(Intercept)", 1.0), ("x", 0.5), ("w", -0.3)] {
            let k = try XCTUnwrap(fit.fixedNames.firstIndex(of: name))
            XCTAssertEqual(fit.beta[k], truth, accuracy: 4 * fit.standardErrors[k] + 0.05, name)
        }
        XCTAssertEqual(fit.sigma, 1, accuracy: 0.05)
    }
}
