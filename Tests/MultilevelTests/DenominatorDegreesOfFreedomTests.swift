import Foundation
import XCTest
@testable import Multilevel

/// Denominator degrees of freedom (`--ddf`) against lmerTest (`bench/make_variance_references.R`):
/// Satterthwaite's on sleepstudy (REML and ML), Penicillin, Exam and InstEval, Kenward–Roger's
/// (pbkrtest) on sleepstudy and Exam. Every β̂'s SE, df, t and p (`summary()`) and every term's
/// NumDF, DenDF, F and p (`anova(type = 3)`) within 1e-4 relative (a p-value below 1e-10: its log).
final class DenominatorDegreesOfFreedomTests: ScratchDirectoryTestCase {
    static let reference: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("variance_reference.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    func testSatterthwaiteIsLmerTests() throws {
        try compare(Self.reference["satterthwaite"] as! [[String: Any]], method: .satterthwaite)
    }

    func testKenwardRogerIsPbkrtests() throws {
        try compare(Self.reference["kenward_roger"] as! [[String: Any]], method: .kenwardRoger)
    }

    private func compare(_ cases: [[String: Any]], method: DenominatorDF) throws {
        for c in cases {
            let name = "\(c["name"] as! String) \(method)"
            func numbers(_ key: String) -> [Double] { (c[key] as! [NSNumber]).map(\.doubleValue) }
            func close(_ value: Double, _ expected: Double, _ what: String) {
                // A p-value below 1e-10 moves by t² times t's relative difference (InstEval's intercept,
                // t = 41: 1e-6 in t, from β̂ and its SE, is 1.5e-3 of p = 2.7e-260): its log, there.
                if what.hasSuffix(" p") && expected < 1e-10 {
                    XCTAssertEqual(log(value), log(expected), accuracy: 1e-4 * abs(log(expected)), "\(name) \(what) (log)")
                } else {
                    XCTAssertEqual(value, expected, accuracy: 1e-4 * abs(expected), "\(name) \(what)")
                }
            }
            var options = FitOptions(reml: c["REML"] as! Bool)
            options.ddf = method
            let fit = try LinearMixedModel.fit(c["formula"] as! String, data: try openTable(path: Fixtures.path(c["file"] as! String), table: nil),
                                               options: options)
            XCTAssertEqual(fit.fixedNames, c["beta_names"] as! [String], name)
            let tests = try XCTUnwrap(fit.fixedEffectTests, name)
            XCTAssertEqual(tests.method, method)
            for (j, beta) in fit.fixedNames.enumerated() {
                close(tests.standardErrors[j], numbers("se")[j], "\(beta) se")
                close(tests.df[j], numbers("df")[j], "\(beta) df")
                close(tests.t[j], numbers("t")[j], "\(beta) t")
                close(tests.p[j], numbers("p")[j], "\(beta) p")
            }
            XCTAssertEqual(tests.terms.map(\.term), c["anova_terms"] as! [String], name)
            XCTAssertEqual(tests.untestedTerms, [], name)
            for (i, term) in tests.terms.enumerated() where i < numbers("anova_F").count {
                XCTAssertEqual(Double(term.numeratorDF), numbers("anova_numdf")[i], "\(name) \(term.term) NumDF")
                close(term.denominatorDF, numbers("anova_dendf")[i], "\(term.term) DenDF")
                close(term.f, numbers("anova_F")[i], "\(term.term) F")
                close(term.p, numbers("anova_p")[i], "\(term.term) p")
            }
        }
    }

    /// A term coded without treatment contrasts (`a:b` without `a`: b by all its levels) has no
    /// type-3 row here, and is named as untested rather than given a wrong hypothesis.
    func testTermsOutsideTreatmentCodingAreNotTested() throws {
        let design = try Design(Formula.parse("y ~ service:dept + studage").fixed) { variable in
            variable.name == "studage" ? .numeric : .categorical(levels: variable.name == "service" ? ["0", "1"] : ["a", "b", "c"])
        }
        let contrasts = TypeThreeContrasts.contrasts(design, terms: try Formula.parse("y ~ service:dept + studage").fixed,
                                                     kept: Array(design.columns.indices))
        XCTAssertEqual(contrasts.map(\.term), ["studage", "service:dept"])
        XCTAssertEqual(contrasts[0].rows?.count, 1)
        XCTAssertNil(contrasts[1].rows)
    }

    /// The F distribution's upper tail against R's pf(f, d1, d2, lower.tail = FALSE).
    func testFTailIsRs() {
        for (f, d1, d2, expected) in [(3.35569742599191, 2.0, 61.1356197383091, 0.0414210980144098),
                                      (8.47154232293172, 13, 32945.6390077251, 1.89805782231121e-17),
                                      (0.5, 3, 10, 0.69062224553355733)] {
            XCTAssertEqual(FDistribution.upperTail(f, numeratorDF: d1, denominatorDF: d2), expected, accuracy: 1e-9 * expected, "F \(f)")
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
        let kr = try mlm(["fit", Fixtures.path("exam.csv"), "--formula", "normexam ~ standLRT * schavg + sex + schgend + (standLRT | school)",
                          "--ddf", "kenward-roger"])
        XCTAssertEqual(kr.status, 0, kr.stderr)
        XCTAssertTrue(kr.stdout.contains("Type III Analysis of Variance Table with Kenward-Roger's method"), kr.stdout)
        XCTAssertTrue(kr.stdout.contains("schgend"), kr.stdout)
        XCTAssertTrue(kr.stdout.contains("standard errors adjusted"), kr.stdout)
        let sleepstudy = ["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)"]
        try assertFails(sleepstudy + ["--ddf", "kenward-roger", "--ml"], mentioning: "--ddf kenward-roger needs a REML fit")
        try assertFails(sleepstudy + ["--ddf", "containment"], mentioning: "--ddf must be none, satterthwaite or kenward-roger", status: 2)
        try assertFails(sleepstudy + ["--ddf", "satterthwaite", "--solver", "iterative"],
                        mentioning: "--ddf satterthwaite needs a Cholesky factor")
        try assertFails(["fit", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                         "--family", "binomial", "--ddf", "satterthwaite"], mentioning: "--ddf is for linear mixed models")
        try assertFails(["fit", Fixtures.path("apiclus2.csv"), "--formula", "api00 ~ ell + meals + (1 | dnum)",
                         "--survey-weights", "w_school, w_district", "--ddf", "satterthwaite"],
                        mentioning: "--ddf is not available with --survey-weights")
        try assertFails(["fit", Fixtures.path("insteval.csv"), "--formula", "y ~ service + (1 | s) + (1 | d)", "--ddf", "kenward-roger"],
                        mentioning: "this model has 4100 random effects, and Kenward-Roger's dense algebra in them is done for at most 3000")
        try assertFails(["fit", Fixtures.path("exam.csv"), "--formula", "normexam ~ standLRT + (standLRT | school)",
                         "--ddf", "kenward-roger", "--max-memory", "1M"],
                        mentioning: "its dense algebra in the 130 random effects needs about 1.29 MB, more than the 1.00 MB of --max-memory")
    }
}
