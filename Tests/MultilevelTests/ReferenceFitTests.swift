import Foundation
import XCTest
@testable import Multilevel

/// Conformance with lme4: every fit in `Fixtures/*.json` (made by `bench/make_references.R`),
/// from both the CSV and the HDF5 copy of its data.
///
/// Tolerances (the acceptance policy): the REML criterion or deviance at most lme4's + 1e-8
/// relative; lower is a better optimum, not an error. With the Newton optimiser (the default)
/// every fit here is within 1e-14 relative of lme4's (rounding) or below it, by at most 4.0e-11
/// relative (exam `xl`, 3.7e-7 absolute; exam `rs_ml` 2.5e-7; sleepstudy `ml` 2.6e-8). θ within
/// 2e-3 absolute; β within 1e-3 standard errors; standard errors, σ and variance-component SDs
/// within 1e-3 relative (SDs of 0.01 or less within 1e-3·σ); correlations within 2e-3 absolute.
final class ReferenceFitTests: XCTestCase {
    /// The multiple-membership reference was fitted in R through a placeholder factor `mm`;
    /// here the term is written as in brms, and lme4's `mm` names map to its text.
    static let mmText = "mm(school1, school2, school3, weights = cbind(w1, w2, w3))"

    struct Reference {
        let dataset: String
        let name: String
        let json: [String: Any]
        var formula: String {
            (json["formula"] as! String).replacingOccurrences(of: "(1 | mm)", with: "(1 | \(ReferenceFitTests.mmText))")
        }
        func rename(_ s: String) -> String {
            if s == "mm" { return ReferenceFitTests.mmText }
            if s.hasPrefix("mm.") { return ReferenceFitTests.mmText + s.dropFirst(2) }
            return s
        }
    }

    static func references(_ dataset: String) -> [Reference] {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("\(dataset).json")))
        let all = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return all.keys.sorted().map { Reference(dataset: dataset, name: $0, json: all[$0] as! [String: Any]) }
    }

    func check(_ dataset: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for ext in ["csv", "h5"] {
            for ref in Self.references(dataset) {
                let data = try openTable(path: Fixtures.path("\(dataset).\(ext)"), table: nil)
                var options = FitOptions(reml: ref.json["REML"] as! Bool)
                options.weights = ref.json["weights"] as? String
                let fit = try LinearMixedModel.fit(ref.formula, data: data, options: options)
                compare(fit, ref, label: "\(dataset).\(ext) \(ref.name)", file: file, line: line)
            }
        }
    }

    func compare(_ fit: FitResult, _ ref: Reference, label: String, file: StaticString, line: UInt) {
        let j = ref.json
        func fail(_ what: String) { XCTFail("\(label): \(what)", file: file, line: line) }
        if fit.nobs != j["nobs"] as! Int { fail("nobs \(fit.nobs) vs \(j["nobs"]!)") }
        // Criterion: at most lme4's + 1e-8 relative (lower is a better optimum, not an error).
        let lme4Objective = (fit.reml ? j["REMLcrit"] : j["deviance"]) as! Double
        if fit.objective > lme4Objective + 1e-8 * abs(lme4Objective) {
            fail("criterion \(fit.objective) vs lme4 \(lme4Objective)")
        }
        XCTAssertEqual(fit.df, j["df"] as! Int, label, file: file, line: line)
        XCTAssertEqual(fit.logLik, j["logLik"] as! Double, accuracy: 1e-6 * abs(lme4Objective), label, file: file, line: line)
        XCTAssertEqual(fit.aic, j["AIC"] as! Double, accuracy: 1e-6 * abs(lme4Objective), label, file: file, line: line)
        XCTAssertEqual(fit.bic, j["BIC"] as! Double, accuracy: 1e-6 * abs(lme4Objective), label, file: file, line: line)
        // θ and its names.
        // jsonlite writes a length-one vector as a scalar.
        let thetaNames = ((j["theta_names"] as? [String]) ?? [j["theta_names"] as! String]).map(ref.rename)
        XCTAssertEqual(fit.thetaNames, thetaNames, label, file: file, line: line)
        let theta = (j["theta"] as? [Double]) ?? [j["theta"] as! Double]
        for (a, b) in zip(fit.theta, theta) where abs(a - b) > 2e-3 { fail("θ \(fit.theta) vs \(theta)") }
        // Fixed effects, by name.
        let beta = j["beta"] as! [String: Double], se = j["se"] as! [String: Double]
        XCTAssertEqual(Set(fit.fixedNames), Set(beta.keys), label, file: file, line: line)
        for (i, name) in fit.fixedNames.enumerated() {
            guard let b = beta[name], let s = se[name] else { continue }
            if abs(fit.beta[i] - b) > 1e-3 * s { fail("β[\(name)] \(fit.beta[i]) vs \(b)") }
            if abs(fit.standardErrors[i] - s) > 1e-3 * s { fail("SE[\(name)] \(fit.standardErrors[i]) vs \(s)") }
        }
        let sigma = j["sigma"] as! Double
        if abs(fit.sigma - sigma) > 1e-3 * sigma { fail("σ \(fit.sigma) vs \(sigma)") }
        // Groups.
        let ngroups = (j["ngroups"] as! [String: Int]).reduce(into: [String: Int]()) { $0[ref.rename($1.key)] = $1.value }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: fit.groupCounts.map { ($0.group, $0.count) }), ngroups,
                       label, file: file, line: line)
        // Variance components, in lme4's order.
        let vc = (j["varcorr"] as! [String: Any]).sorted { Int($0.key)! < Int($1.key)! }.map { $0.value as! [String: Any] }
        XCTAssertEqual(fit.varcorr.count, vc.count, label, file: file, line: line)
        for (mine, theirs) in zip(fit.varcorr, vc) {
            XCTAssertEqual(mine.group, ref.rename(theirs["grp"] as! String), label, file: file, line: line)
            XCTAssertEqual(mine.var1, theirs["var1"] as? String, label, file: file, line: line)
            XCTAssertEqual(mine.var2, theirs["var2"] as? String, label, file: file, line: line)
            let sdcor = theirs["sdcor"] as! Double
            if mine.var2 != nil {
                if abs(mine.sdcor - sdcor) > 2e-3 { fail("correlation \(mine.group) \(mine.sdcor) vs \(sdcor)") }
            } else if abs(mine.sdcor - sdcor) > max(1e-3 * sdcor, sdcor <= 0.01 ? 1e-3 * sigma : 0) {
                fail("SD \(mine.group) \(mine.var1 ?? "") \(mine.sdcor) vs \(sdcor)")
            }
        }
    }

    func testSleepstudy() throws { try check("sleepstudy") }
    func testDyestuff() throws { try check("dyestuff") }
    func testPenicillin() throws { try check("penicillin") }
    func testPastes() throws { try check("pastes") }
    func testExam() throws { try check("exam") }
    func testInstEval() throws { try check("insteval") }
    func testMultipleMembership() throws { try check("multimember") }
    /// Precision weights (lmer's `weights =`): sleepstudy with w = 1 + (Days mod 3)/2, REML and
    /// ML; Exam with w = 0.5 + (student mod 4)/2, a random intercept (REML) and slope (ML).
    func testSleepstudyWithPrecisionWeights() throws { try check("sleepstudy_weights") }
    func testExamWithPrecisionWeights() throws { try check("exam_weights") }
}
