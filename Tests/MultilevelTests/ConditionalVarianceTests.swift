import Foundation
import XCTest
@testable import Multilevel

/// Conditional variances of the random effects against lme4's `ranef(m, condVar = TRUE)`.
final class ConditionalVarianceTests: XCTestCase {
    /// sleepstudy (2 × 2 blocks, CHOLMOD: one term) and Penicillin (two crossed scalar terms,
    /// the blocked factorisation): every postVar entry within 1e-4 relative of lme4's.
    func testConditionalVariancesMatchLme4() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("condvar.json")))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for (name, file) in [("sleepstudy", "sleepstudy.csv"), ("penicillin", "penicillin.csv")] {
            let reference = json[name] as! [String: Any]
            let fit = try LinearMixedModel.fit(reference["formula"] as! String, data: openTable(path: Fixtures.path(file), table: nil))
            let variances = try fit.conditionalVariances()
            let postVar = reference["postVar"] as! [String: Any]
            for (k, term) in fit.terms.enumerated() {
                let entry = postVar[term.group] as! [String: Any]
                XCTAssertEqual(entry["levels"] as! [String], term.levels, "\(name) \(term.group)")
                let matrices = entry["matrices"] as? [[Double]] ?? entry["values"] as? [[Double]] ?? []
                XCTAssertEqual(matrices.count, term.levels.count, "\(name) \(term.group)")
                let p = term.dimension
                for (l, m) in matrices.enumerated() {
                    for a in 0..<p { for b in 0..<p {
                        let theirs = m[a * p + b], mine = variances[k][l][a + b * p]
                        XCTAssertEqual(mine, theirs, accuracy: 1e-4 * max(abs(theirs), 1e-12 * abs(m[0])), "\(name) \(term.group) level \(l) (\(a),\(b))")
                    } }
                }
            }
            // The CSV's condsd column is the square root of the diagonal.
            let csv = try fit.conditionalModesCSV().split(separator: "\n")
            XCTAssertEqual(csv.first, "grpvar,term,grp,condval,condsd")
            let rows = reference["ranef"] as! [[String: Any]]
            XCTAssertEqual(csv.count - 1, rows.count)
        }
    }
}
