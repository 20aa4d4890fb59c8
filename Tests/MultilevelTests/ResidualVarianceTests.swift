import Foundation
import XCTest
@testable import Multilevel

/// `--residual-variance` against nlme's `lme(..., weights = varIdent(~ 1 | g))` (REML and ML, on
/// Orthodont by Sex and Exam by sex) and `varExp` / `varPower` of standLRT on Exam (REML)
/// (`bench/make_variance_references.R`, "nlme"): logLik within 1e-6 relative, the variance
/// parameters within 1e-3, β within 1e-3 SE, the SEs and σ within 1e-4 relative.
final class ResidualVarianceTests: ScratchDirectoryTestCase {
    static let cases: [[String: Any]] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("variance_reference.json")))
        return (try! JSONSerialization.jsonObject(with: data) as! [String: Any])["nlme"] as! [[String: Any]]
    }()

    func testFitsAreNlmes() throws {
        XCTAssertEqual(Self.cases.count, 6)
        for c in Self.cases {
            let name = c["name"] as! String
            func numbers(_ key: String) -> [Double] { (c[key] as! [NSNumber]).map(\.doubleValue) }
            var options = FitOptions(reml: c["method"] as! String == "REML")
            options.residualVariance = try ResidualVarianceModel.parse(c["weights"] as! String)
            let fixed = c["fixed"] as! String, random = (c["random"] as! String).replacingOccurrences(of: "~", with: "")
            let fit = try LinearMixedModel.fit("\(fixed) + (\(random))", data: try openTable(path: Fixtures.path(c["file"] as! String), table: nil),
                                               options: options)
            let expected = c["logLik"] as! Double
            XCTAssertEqual(fit.logLik, expected, accuracy: 1e-6 * abs(expected), name)
            let variance = try XCTUnwrap(fit.residualVariance, name)
            if c["group"] is String {
                XCTAssertEqual(variance.names, c["variance_parameter_names"] as! [String], name)
            }
            for (value, reference) in zip(variance.values, numbers("variance_parameters")) {
                XCTAssertEqual(value, reference, accuracy: 1e-3, "\(name) variance parameter")
            }
            XCTAssertEqual(variance.values.count, numbers("variance_parameters").count, name)
            for j in fit.beta.indices {
                XCTAssertEqual(fit.beta[j], numbers("beta")[j], accuracy: 1e-3 * numbers("se")[j], "\(name) β\(j)")
                XCTAssertEqual(fit.standardErrors[j], numbers("se")[j], accuracy: 1e-4 * numbers("se")[j], "\(name) SE\(j)")
            }
            XCTAssertEqual(fit.sigma, c["sigma"] as! Double, accuracy: 1e-4 * (c["sigma"] as! Double), name)
            let sd = fit.varcorr.filter { $0.group != "Residual" && $0.var2 == nil }.map(\.sdcor)
            XCTAssertEqual(sd[0], numbers("random_sd")[0], accuracy: 1e-4 * numbers("random_sd")[0], name)
            // nlme's AIC counts the variance parameters (its BIC uses n − p under REML; lme4's, n).
            XCTAssertEqual(fit.aic, c["AIC"] as! Double, accuracy: 1e-6 * (c["AIC"] as! Double), name)
        }
    }

    /// The groups' cross-products add up to all the rows' (one pattern), and weighting group g by
    /// w_g is the fit with precision weights w_g on its rows.
    func testGroupCrossProductsAreTheRowsWeighted() throws {
        let data = try openTable(path: Fixtures.path("orthodont.csv"), table: nil)
        var formula = try Formula.parse("distance ~ age + (1 | Subject)")
        formula = formula.withResidualVariance(.groups("Sex"))
        let frame = try ModelFrame.scan(formula, source: data, chunkRows: 20, threads: 2, communicator: SingleProcess(), segmentRows: 32)
        let parts = try frame.groupCrossProducts(threads: 2)
        XCTAssertEqual(parts.map(\.rows), [44, 64])
        let all = try frame.crossProducts(threads: 2)
        let sum = CrossProducts.combining(parts, weights: [1, 1])
        for (a, b) in zip(sum.denseZtZ(), all.denseZtZ()) { XCTAssertEqual(a, b, accuracy: 1e-12 * max(1, abs(b))) }
        for (a, b) in zip(sum.denseXyTXy, all.denseXyTXy) { XCTAssertEqual(a, b, accuracy: 1e-12 * max(1, abs(b))) }
        XCTAssertEqual(sum.logWeights, 0)
        let weighted = CrossProducts.combining(parts, weights: [1, 0.25])
        XCTAssertEqual(weighted.logWeights, 64 * log(0.25), accuracy: 1e-12)
    }

    func testParsing() throws {
        XCTAssertEqual(try ResidualVarianceModel.parse("~ 1 | Sex"), .groups("Sex"))
        XCTAssertEqual(try ResidualVarianceModel.parse("varIdent(form = ~1|`school type`)"), .groups("school type"))
        XCTAssertEqual(try ResidualVarianceModel.parse("~ x"), .exponential("x"))
        XCTAssertEqual(try ResidualVarianceModel.parse("varExp(~ standLRT)"), .exponential("standLRT"))
        XCTAssertEqual(try ResidualVarianceModel.parse("varPower(form = ~ age)"), .power("age"))
        for bad in ["1 | g", "~ 2 | g", "varPower(~ 1 | g)", "~ x + z", "varFixed(~ x)"] {
            XCTAssertThrowsError(try ResidualVarianceModel.parse(bad), bad) { error in
                XCTAssertTrue((error as! InputError).message.contains("--residual-variance must be"), bad)
            }
        }
    }

    /// `mlm predict` from a varIdent fit: nlme's `fitted(level = 1)` and `fitted(level = 0)`, and
    /// `mlm compare` of the constant and varIdent models: nlme's ML log-likelihood, and the test.
    func testPredictAndCompare() throws {
        for c in Self.cases where c["fitted"] is [NSNumber] {
            let name = c["name"] as! String
            var arguments = ["fit", Fixtures.path(c["file"] as! String), "--formula", "distance ~ age + (1 | Subject)",
                             "--residual-variance", c["weights"] as! String, "--json", temporary("\(name).json")]
            if c["method"] as! String == "ML" { arguments.append("--ml") }
            XCTAssertEqual(try mlm(arguments).status, 0, name)
            for (flag, key) in [([String](), "fitted"), (["--population"], "fitted_population")] {
                let run = try mlm(["predict", Fixtures.path(c["file"] as! String), "--model", temporary("\(name).json")] + flag)
                XCTAssertEqual(run.status, 0, run.stderr)
                let predicted = run.stdout.split(separator: "\n").dropFirst().map { Double($0)! }
                let expected = (c[key] as! [NSNumber]).map(\.doubleValue)
                XCTAssertEqual(predicted.count, expected.count, name)
                for (a, b) in zip(predicted, expected) { XCTAssertEqual(a, b, accuracy: 1e-5 * abs(b), "\(name) \(key)") }
            }
        }
        let compare = try mlm(["compare", Fixtures.path("orthodont.csv"), "--formula", "distance ~ age + (1 | Subject)",
                               "--formula", "distance ~ age + (1 | Subject)", "--residual-variance", "none",
                               "--residual-variance", "~ 1 | Sex", "--json", temporary("compare.json")])
        XCTAssertEqual(compare.status, 0, compare.stderr)
        XCTAssertTrue(compare.stdout.contains("m2: distance ~ age + (1 | Subject), varIdent(~1 | Sex)"), compare.stdout)
        let table = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: temporary("compare.json")))) as! [String: Any]
        let models = table["models"] as! [[String: Any]]
        let ml = Self.cases.first { $0["name"] as! String == "orthodont_varident_ml" }!["logLik"] as! Double
        let logLiks = models.map { ($0["logLik"] as! NSNumber).doubleValue }
        XCTAssertEqual(logLiks[1], ml, accuracy: 1e-6 * abs(ml))
        XCTAssertEqual((models[1]["Chisq"] as! NSNumber).doubleValue, 2 * (logLiks[1] - logLiks[0]), accuracy: 1e-9)
        XCTAssertEqual((models[1]["Df"] as! NSNumber).intValue, 1)
        let mismatched = try mlm(["compare", Fixtures.path("orthodont.csv"), "--formula", "distance ~ age + (1 | Subject)",
                                  "--formula", "distance ~ (1 | Subject)", "--residual-variance", "~ 1 | Sex"])
        XCTAssertNotEqual(mismatched.status, 0)
        XCTAssertTrue(mismatched.stderr.contains("give one --residual-variance per --formula"), mismatched.stderr)
    }

    /// The varIdent bootstrap simulates each group's residuals with its own SD and re-estimates
    /// the ratio: the replicates' ratios centre on δ̂ (Orthodont: 2.2; replicates with one σ for
    /// both sexes would centre on 1) and their σ on σ̂; the table is the same on 1 and 2 threads.
    func testBootstrapSimulatesEachGroupsVariance() throws {
        var options = FitOptions()
        options.residualVariance = .groups("Sex")
        let fit = try LinearMixedModel.fit("distance ~ age + (1 | Subject)", data: try openTable(path: Fixtures.path("orthodont.csv"), table: nil),
                                           options: options)
        let delta = fit.residualVariance!.values[1]
        let boot = try XCTUnwrap(ParametricBootstrap.run(fit, options: BootstrapOptions(replicates: 200, seed: 7, threads: 2)))
        XCTAssertEqual(boot.failed, 0)
        let ratios = boot.replicates.map { $0.varianceParameters[0] }, sigmas = boot.replicates.map(\.sigma)
        XCTAssertEqual(ratios.reduce(0, +) / 200, delta, accuracy: 0.05 * delta)
        XCTAssertEqual(sigmas.reduce(0, +) / 200, fit.sigma, accuracy: 0.05 * fit.sigma)
        let interval = try XCTUnwrap(boot.intervals.first { $0.parameter.kind == .variance })
        XCTAssertEqual(interval.parameter.label, "ratio(Male|Sex)")
        XCTAssertLessThan(interval.lower, delta)
        XCTAssertGreaterThan(interval.upper, delta)
        XCTAssertGreaterThan(interval.lower, 1.2)
        let one = try XCTUnwrap(ParametricBootstrap.run(fit, options: BootstrapOptions(replicates: 20, seed: 7, threads: 1)))
        XCTAssertEqual(one.replicates, Array(boot.replicates.prefix(20)))
        XCTAssertEqual(boot.tableColumns.last, "ratio(Male|Sex)")
    }

    /// The profile of a varIdent fit minimises over the ratios at every point, and profiles them:
    /// its limits for the ratio and β_age are nlme's (ML deviance, root-found on fits with the
    /// ratio held or age's term in the response) within 1e-4 relative; refused for ~ x.
    func testProfileMinimisesOverTheRatios() throws {
        let reference = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("variance_reference.json"))))
                         as! [String: Any])["profile"] as! [String: Any]
        var options = FitOptions()
        options.residualVariance = .groups("Sex")
        let data = try openTable(path: Fixtures.path("orthodont.csv"), table: nil)
        let fit = try LinearMixedModel.fit("distance ~ age + (1 | Subject)", data: data, options: options)
        let profile = try XCTUnwrap(ProfileLikelihood.run(fit, options: ProfileOptions(level: 0.95, threads: 2)))
        for (label, key) in [("ratio(Male|Sex)", "ratio_Male"), ("age", "age")] {
            let interval = try XCTUnwrap(profile.intervals.first { $0.parameter.label == label }, label)
            let expected = (reference[key] as! [NSNumber]).map(\.doubleValue)
            XCTAssertEqual(interval.lower, expected[0], accuracy: 1e-4 * expected[0], "\(label) lower")
            XCTAssertEqual(interval.upper, expected[1], accuracy: 1e-4 * expected[1], "\(label) upper")
        }
        var exponential = FitOptions()
        exponential.residualVariance = .exponential("age")
        let other = try LinearMixedModel.fit("distance ~ age + (1 | Subject)", data: data, options: exponential)
        XCTAssertThrowsError(try ProfileLikelihood.run(other, options: ProfileOptions())) { error in
            XCTAssertTrue((error as! InputError).message.contains("it is available for \"~ 1 | g\""))
        }
    }

    /// The command line: nlme's block in the summary, the JSON, and one-line refusals.
    func testCommandLine() throws {
        let run = try mlm(["fit", Fixtures.path("orthodont.csv"), "--formula", "distance ~ age + (1 | Subject)",
                           "--residual-variance", "~ 1 | Sex", "--json", temporary("v.json")])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("Variance function (varIdent):\n Structure: Different standard deviations per stratum\n Formula: ~1 | Sex"),
                      run.stdout)
        XCTAssertTrue(run.stdout.contains("1.000000 2.2057"), run.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: temporary("v.json")))) as! [String: Any]
        let v = try XCTUnwrap(json["residual_variance"] as? [String: Any])
        XCTAssertEqual(v["function"] as? String, "varIdent")
        XCTAssertEqual((v["parameters"] as! [String: NSNumber])["Male"]!.doubleValue, 2.20571145102431, accuracy: 1e-3)
        XCTAssertEqual((v["n"] as! [String: NSNumber])["Female"]!.intValue, 44)
        let test = try XCTUnwrap(v["constant_test"] as? [String: NSNumber])
        XCTAssertEqual(test["Df"]!.intValue, 1)
        XCTAssertGreaterThan(test["Chisq"]!.doubleValue, 10)
        // The report: each variance group's residual plots, with that group's rows only.
        let report = try mlm(["fit", Fixtures.path("orthodont.csv"), "--formula", "distance ~ age + (1 | Subject)",
                              "--residual-variance", "~ 1 | Sex", "--report", temporary("report")])
        XCTAssertEqual(report.status, 0, report.stderr)
        for (group, rows) in [("Female", 44), ("Male", 64)] {
            let svg = try String(contentsOfFile: temporary("report/residuals-fitted-Sex-\(group).svg"), encoding: .utf8)
            XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, rows, group)
            XCTAssertTrue(FileManager.default.fileExists(atPath: temporary("report/qq-residuals-Sex-\(group).svg")), group)
        }
        let html = try String(contentsOfFile: temporary("report/index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("Residuals by the level-1 variance function (varIdent(~1 | Sex))"))
        let exponential = try mlm(["fit", Fixtures.path("exam.csv"), "--formula", "normexam ~ standLRT + (1 | school)",
                                   "--residual-variance", "varExp(~ standLRT)", "--report", temporary("report-exp")])
        XCTAssertEqual(exponential.status, 0, exponential.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: temporary("report-exp/standardised-residuals-fitted.svg")))
        // varPower of a covariate that is 0 in a row (|x|^t is 0 or infinite for t ≠ 0): refused,
        // naming the line, rather than fitted at t = 0, where every other t failed.
        let lines = try String(contentsOfFile: Fixtures.path("orthodont.csv"), encoding: .utf8).split(separator: "\n")
        let shifted = try write(([lines[0] + ",\"age8\""] + lines.dropFirst().map { line in
            let age = Double(line.split(separator: ",")[1])!
            return line + "," + String(age - 8)
        }).joined(separator: "\n") + "\n", to: "orthodont-age8.csv")
        try assertFails(["fit", shifted, "--formula", "distance ~ age + (1 | Subject)", "--residual-variance", "varPower(~ age8)"],
                        mentioning: "line 2: 'age8' is 0, and varPower(~age8) needs age8 ≠ 0")
        try assertFails(["fit", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                         "--family", "binomial", "--residual-variance", "~ 1 | period"],
                        mentioning: "--residual-variance is for linear mixed models")
        try assertFails(["fit", Fixtures.path("apiclus2.csv"), "--formula", "api00 ~ ell + meals + (1 | dnum)",
                         "--survey-weights", "w_school, w_district", "--residual-variance", "~ 1 | stype"],
                        mentioning: "--residual-variance is not available with --survey-weights")
        for (arguments, message) in [
            (["--residual-variance", "~ 1 | Nope"], "Nope"),
            (["--residual-variance", "~ 1 | Subject"], "Subject has 27 levels; a residual variance per level is for a handful of them"),
            (["--residual-variance", "~ 1 | Sex", "--ddf", "satterthwaite"], "--ddf is not available with --residual-variance"),
            (["--residual-variance", "varPower(~ age)", "--weights", "age"], "--residual-variance is not available with --weights"),
            (["--residual-variance", "1 | Sex"], "--residual-variance must be"),
            (["--residual-variance", "varExp(~ age)", "--bootstrap", "10"], "it is available for \"~ 1 | g\""),
        ] {
            try assertFails(["fit", Fixtures.path("orthodont.csv"), "--formula", "distance ~ age + (1 | Subject)"] + arguments, mentioning: message)
        }
    }
}
