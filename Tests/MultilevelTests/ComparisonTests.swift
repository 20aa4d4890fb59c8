import Foundation
import XCTest
@testable import Multilevel

/// `compare` against lme4's `anova()` on exam (`bench/make_report_fixtures.R`).
final class ComparisonTests: ScratchDirectoryTestCase {
    func fixture() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("exam_anova.json")))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    func assertMatches(_ comparison: ModelComparison, _ models: [[String: Any]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(comparison.rows.count, models.count, file: file, line: line)
        for (row, lme4) in zip(comparison.rows, models) {
            XCTAssertEqual(row.formula, lme4["formula"] as? String, file: file, line: line)
            XCTAssertEqual(row.npar, lme4["npar"] as? Int, file: file, line: line)
            for (mine, key) in [(row.deviance, "deviance"), (row.aic, "AIC"), (row.bic, "BIC"), (row.logLik, "logLik")] {
                let theirs = lme4[key] as! Double
                XCTAssertEqual(mine, theirs, accuracy: 1e-6 * abs(theirs), "\(row.formula): \(key)", file: file, line: line)
            }
            if let chisq = lme4["Chisq"] as? Double {
                XCTAssertEqual(row.chisq!, chisq, accuracy: 1e-6 * max(1, chisq), "\(row.formula): Chisq", file: file, line: line)
                XCTAssertEqual(row.df, lme4["Df"] as? Int, file: file, line: line)
                XCTAssertEqual(row.p!, lme4["p"] as! Double, accuracy: 1e-4, "\(row.formula): p", file: file, line: line)
            } else {
                XCTAssertNil(row.chisq, file: file, line: line)
                XCTAssertNil(row.p, file: file, line: line)
            }
        }
    }

    /// Empty model, random intercept, random slope: lme4's anova table (ML refits), deviances to
    /// 1e-6 relative and p-values to 1e-4; the order is by npar whatever the order given; the
    /// random slope's test also gets the 50:50 mixture p-value.
    func testCompareReproducesLme4Anova() throws {
        let json = try fixture()
        let formulas = json["formulas"] as! [String]
        let data = try openTable(path: Fixtures.path("exam.csv"), table: nil)
        let comparison = try ModelComparison.compare(formulas, data: data)
        assertMatches(comparison, json["models"] as! [[String: Any]])
        let note = json["boundary_note"] as! [String: Any]
        XCTAssertEqual(comparison.rows[2].boundaryP!, note["p_mixture_df1_df2"] as! Double,
                       accuracy: 1e-6 * max(1e-300, note["p_mixture_df1_df2"] as! Double))
        XCTAssertNil(comparison.rows[1].boundaryP, "different fixed effects: no boundary mixture")

        let reversed = try ModelComparison.compare([formulas[1], formulas[0]], data: data)
        assertMatches(reversed, (json["anova_two"] as! [String: Any])["models"] as! [[String: Any]])
        XCTAssertEqual(reversed.rows.map(\.name), ["m2", "m1"])
    }

    /// The command prints the table and writes `{"models": [...]}` with lme4's keys; bad input is one line.
    func testCompareCommand() throws {
        let formulas = try fixture()["formulas"] as! [String]
        let out = temporary("anova.json")
        let run = try mlm(["compare", Fixtures.path("exam.csv")] + formulas.flatMap { ["--formula", $0] } + ["--json", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("npar"))
        XCTAssertTrue(run.stdout.contains("Pr(>Chisq)"))
        XCTAssertTrue(run.stdout.contains("50:50 mixture"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as! [String: Any]
        let models = json["models"] as! [[String: Any]]
        XCTAssertEqual(models.count, 3)
        for key in ["formula", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p"] {
            XCTAssertTrue(models.allSatisfy { $0.keys.contains(key) }, key)
        }
        XCTAssertTrue(models[0]["Chisq"] is NSNull)

        let one = try mlm(["compare", Fixtures.path("exam.csv"), "--formula", formulas[0]])
        XCTAssertNotEqual(one.status, 0)
        let missing = try mlm(["compare", Fixtures.path("exam.csv"), "--formula", formulas[0], "--formula", "normexam ~ nope + (1 | school)"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("nope"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1)
    }
}
