import Foundation
import XCTest
@testable import Multilevel

/// Satterthwaite's degrees of freedom (`--ddf satterthwaite`) against lmerTest's `summary()`
/// (`bench/make_variance_references.R`, "satterthwaite"): df, t and p of every β̂ on sleepstudy,
/// Penicillin, Exam and InstEval (REML; sleepstudy also ML), within 1e-4 relative (a p-value below 1e-10: its log).
final class DenominatorDegreesOfFreedomTests: ScratchDirectoryTestCase {
    static let reference: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("variance_reference.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    func testSatterthwaiteIsLmerTests() throws {
        for c in Self.reference["satterthwaite"] as! [[String: Any]] {
            let name = c["name"] as! String
            func numbers(_ key: String) -> [Double] { (c[key] as! [NSNumber]).map(\.doubleValue) }
            var options = FitOptions(reml: c["REML"] as! Bool)
            options.ddf = .satterthwaite
            let fit = try LinearMixedModel.fit(c["formula"] as! String, data: try openTable(path: Fixtures.path(c["file"] as! String), table: nil),
                                               options: options)
            XCTAssertEqual(fit.fixedNames, c["beta_names"] as! [String], name)
            let df = try XCTUnwrap(fit.denominatorDF, name), p = try XCTUnwrap(fit.tTestPValues, name)
            for (j, beta) in fit.fixedNames.enumerated() {
                XCTAssertEqual(df[j], numbers("df")[j], accuracy: 1e-4 * numbers("df")[j], "\(name) \(beta) df")
                let t = fit.beta[j] / fit.standardErrors[j]
                XCTAssertEqual(t, numbers("t")[j], accuracy: 1e-4 * abs(numbers("t")[j]), "\(name) \(beta) t")
                // A p-value below 1e-10 moves by t² times t's relative difference (InstEval's intercept,
                // t = 41: 1e-6 in t, from β̂ and its SE, is 1.5e-3 of p = 2.7e-260): its log, there.
                if numbers("p")[j] > 1e-10 {
                    XCTAssertEqual(p[j], numbers("p")[j], accuracy: 1e-4 * numbers("p")[j], "\(name) \(beta) p")
                } else {
                    XCTAssertEqual(log(p[j]), log(numbers("p")[j]), accuracy: 1e-4 * abs(log(numbers("p")[j])), "\(name) \(beta) log p")
                }
            }
        }
    }

    /// The t distribution's two-sided tail against R's 2 * pt(-|t|, df).
    func testStudentTTailIsRs() {
        for (t, df, expected) in [(2.0, 5.0, 0.10193947882985828), (1.5, 30, 0.14406592912864608), (10, 3, 0.0021283990584141494),
                                  (0.3, 1000, 0.76423950416724418), (6.771, 17, 3.2667419820539946e-06),
                                  (40, 2.5, 0.00014195634290493385)] {
            XCTAssertEqual(StudentTDistribution.twoSidedTail(t, df: df), expected, accuracy: 1e-12 * expected, "t \(t), df \(df)")
            XCTAssertEqual(StudentTDistribution.twoSidedTail(-t, df: df), expected, accuracy: 1e-12 * expected, "t \(-t), df \(df)")
        }
    }

    /// The command line: lmerTest's columns in the summary, df and p in the JSON, and one-line refusals.
    func testCommandLine() throws {
        let run = try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)",
                           "--ddf", "satterthwaite", "--json", temporary("ddf.json")])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("Estimate Std. Error     df t value Pr(>|t|)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("Days           10.47      1.546 17.000   6.771 3.26e-06 ***"), run.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: temporary("ddf.json")))) as! [String: Any]
        let ddf = try XCTUnwrap(json["ddf"] as? [String: Any])
        XCTAssertEqual(ddf["method"] as? String, "satterthwaite")
        XCTAssertEqual(((ddf["df"] as! [String: NSNumber])["Days"])!.doubleValue, 17, accuracy: 1e-4)
        let plain = try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)"])
        XCTAssertFalse(plain.stdout.contains("Pr(>|t|)"), plain.stdout)
        for (arguments, message) in [
            (["--ddf", "kenward-roger"], "--ddf kenward-roger is not available yet"),
            (["--ddf", "containment"], "--ddf must be none or satterthwaite"),
            (["--ddf", "satterthwaite", "--solver", "iterative"], "--ddf satterthwaite needs a Cholesky factor"),
        ] {
            let bad = try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)"] + arguments)
            XCTAssertNotEqual(bad.status, 0, "\(arguments)")
            XCTAssertTrue(bad.stderr.contains(message), bad.stderr)
            XCTAssertEqual(bad.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, bad.stderr)
        }
        let glmm = try mlm(["fit", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                            "--family", "binomial", "--ddf", "satterthwaite"])
        XCTAssertNotEqual(glmm.status, 0)
        XCTAssertTrue(glmm.stderr.contains("--ddf is for linear mixed models"), glmm.stderr)
        let survey = try mlm(["fit", Fixtures.path("apiclus2.csv"), "--formula", "api00 ~ ell + meals + (1 | dnum)",
                              "--survey-weights", "w_school, w_district", "--ddf", "satterthwaite"])
        XCTAssertNotEqual(survey.status, 0)
        XCTAssertTrue(survey.stderr.contains("--ddf is not available with --survey-weights"), survey.stderr)
        for refused in [glmm, survey] {
            XCTAssertEqual(refused.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, refused.stderr)
        }
    }
}
