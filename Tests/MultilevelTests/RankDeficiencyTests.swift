import Foundation
import XCTest
@testable import Multilevel

/// Which fixed-effect columns are dropped as aliased: lme4's rule (`chkRank.drop.cols`,
/// `qr(X, tol = 1e-7)`, LINPACK dqrdc2), reproduced from X'X. References from
/// `bench/make_rank_fixtures.R` (nearcollinear.csv/json).
final class RankDeficiencyTests: ScratchDirectoryTestCase {
    private func fit(_ formula: String, _ path: String) throws -> FitResult {
        try LinearMixedModel.fit(formula, data: try openTable(path: path, table: nil), options: FitOptions(threads: 1))
    }

    private func references() throws -> [[String: Any]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("nearcollinear.json")))
        return try JSONSerialization.jsonObject(with: data) as! [[String: Any]]
    }

    /// x2 = Days + 1e-4·noise: what is left of x2 after (1, Days) is ~5e-6 of its norm, above
    /// lme4's 1e-7, so lme4 keeps both columns (before: x2 was dropped, below 1e-5 of the norm);
    /// x3 = Days + 1e-9·noise is below it and dropped, as by lme4.
    func testNearlyCollinearColumnsAreKeptOrDroppedAsByLme4() throws {
        for ref in try references() {
            let formula = ref["formula"] as! String
            let result = try fit(formula, Fixtures.path("nearcollinear.csv"))
            XCTAssertEqual(result.fixedNames, ref["kept"] as! [String], formula)
            let dropped = (ref["dropped"] as? String).map { [$0] } ?? []
            XCTAssertEqual(result.notes.contains { $0.contains("rank deficient") }, !dropped.isEmpty, "\(formula) \(result.notes)")
            for name in dropped {
                XCTAssertTrue(result.notes.contains { $0.hasSuffix(": \(name)") }, "\(result.notes)")
            }
            // The fits agree with lme4's. With x2 kept, cond(X) ~ 1e5 and the REML criterion is flat
            // in θ to its last digits: lme4 stops 1e-4 above the minimum found here, so σ and the
            // SEs agree to 1e-3 only.
            let beta = ref["beta"] as! [String: Double], se = ref["se"] as! [String: Double]
            let tolerance = dropped.isEmpty ? 1e-3 : 1e-6
            for (j, name) in result.fixedNames.enumerated() {
                XCTAssertEqual(result.beta[j], beta[name]!, accuracy: tolerance * max(1, abs(beta[name]!)), "\(formula) \(name)")
                XCTAssertEqual(result.standardErrors[j], se[name]!, accuracy: tolerance * se[name]!, "\(formula) \(name)")
            }
            XCTAssertEqual(result.sigma, ref["sigma"] as! Double, accuracy: tolerance * result.sigma, formula)
            XCTAssertEqual(result.objective, ref["REMLcrit"] as! Double, accuracy: dropped.isEmpty ? 1e-3 : 1e-6, formula)
            XCTAssertLessThanOrEqual(result.objective, ref["REMLcrit"] as! Double + 1e-6, formula)
        }
    }

    /// Exact combinations are still dropped at the stricter tolerance, also when the sums run over
    /// many rows of continuous values (x3 = x1 + x2 rounded, 4·x1, a shifted copy, dummies that
    /// add up to the intercept).
    func testExactCombinationsAreDroppedOverManyRows() throws {
        var text = "y,x1,x2,x3,x4,x5,f,g\n"
        var state: UInt64 = 42
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        for i in 0..<20_000 {
            let x1 = uniform() * 10 - 3, x2 = uniform() * 1e3
            let y = 1 + 2 * x1 + 0.01 * x2 + uniform()
            text += "\(y),\(x1),\(x2),\(x1 + x2),\(4 * x1),\(x1 + 7.5),\(["a", "b", "c"][i % 3]),g\(i % 50)\n"
        }
        let path = try write(text, to: "aliased.csv")
        let result = try fit("y ~ x1 + x2 + x3 + x4 + x5 + f + (1 | g)", path)
        XCTAssertEqual(result.fixedNames, ["(Intercept)", "x1", "x2", "fb", "fc"])
        XCTAssertTrue(result.notes.contains { $0.contains("dropping 3 columns / coefficients: x3, x4, x5") }, "\(result.notes)")
        XCTAssertEqual(result.beta[1], 2, accuracy: 0.01)
        // Without an intercept every level has its dummy; the multiple of x1 is still dropped.
        let noIntercept = try fit("y ~ 0 + f + x1 + I(x1 * 2) + (1 | g)", path)
        XCTAssertEqual(noIntercept.fixedNames, ["fa", "fb", "fc", "x1"])
    }
}
