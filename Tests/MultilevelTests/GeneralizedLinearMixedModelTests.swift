import Foundation
import XCTest
@testable import Multilevel

/// GLMMs (`--family`) against lme4's `glmer` (`bench/make_glmm_references.R`): the deviance
/// function at lme4's points, the fitted estimates, standard errors, conditional modes and SDs,
/// quadrature (nAGQ = 9), the links, a Poisson offset, a multiple-membership binary model, and
/// the response's forms (cbind, 0/1, two-level factor).
final class GeneralizedLinearMixedModelTests: ScratchDirectoryTestCase {
    struct Case {
        let name: String, file: String, formula: String, family: ResponseFamily, link: LinkFunction, nodes: Int
        let json: [String: Any]
        func numbers(_ key: String) -> [Double] { (json[key] as! [Any]).map { ($0 as! NSNumber).doubleValue } }
        func named(_ key: String) -> [String: Double] { (json[key] as! [String: Any]).mapValues { ($0 as! NSNumber).doubleValue } }
        func number(_ key: String) -> Double { (json[key] as! NSNumber).doubleValue }
        var options: GeneralizedFitOptions { GeneralizedFitOptions(family: family, link: link, nodes: nodes, threads: 2) }
    }

    static let cases: [String: Case] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("glmm_reference.json")))
        let all = try! JSONSerialization.jsonObject(with: data) as! [[String: Any]]
        var cases: [String: Case] = [:]
        for c in all {
            let name = c["name"] as! String
            cases[name] = Case(name: name, file: c["file"] as! String, formula: c["formula"] as! String,
                               family: ResponseFamily(rawValue: c["family"] as! String)!,
                               link: LinkFunction(rawValue: c["link"] as! String)!,
                               nodes: (c["nAGQ"] as! NSNumber).intValue, json: c)
        }
        return cases
    }()

    func data(_ c: Case) throws -> TableSource { try openTable(path: Fixtures.path(c.file), table: nil) }

    /// lme4's results with PIRLS converged (glmerControl(tolPwrss = 1e-13), tight BOBYQA): glmer's
    /// default tolerance (1e-7) leaves its deviance function up to 1e-5 relative above the
    /// Laplace value and its Hessian SEs up to 1.4% off (`bench/make_glmm_references.R`).
    func tight(_ c: Case) -> [String: Any] { c.json["tight"] as! [String: Any] }

    /// The deviance function equals lme4's (converged PIRLS) at lme4's optimum and two other
    /// points, in (θ, β) (Laplace or quadrature) and in θ alone (nAGQ = 0), for every case: to
    /// 5e-9 relative, as lme4 takes log|L|² with the weights of its penultimate PIRLS iterate
    /// (its last step, under tolPwrss = 1e-13, is still about 1e-5; this PIRLS stops after a
    /// step below 1e-9).
    func testDevianceFunctionIsLme4s() throws {
        for c in Self.cases.values.sorted(by: { $0.name < $1.name }) {
            let prepared = try GeneralizedLinearMixedModel.prepare(c.formula, data: try data(c), options: c.options)
            for point in tight(c)["devfun_points"] as! [[String: Any]] {
                let theta = (point["theta"] as! [NSNumber]).map(\.doubleValue), beta = (point["beta"] as! [NSNumber]).map(\.doubleValue)
                let expected = (point["value"] as! NSNumber).doubleValue
                let value = try prepared.deviance(theta + beta).value
                XCTAssertEqual(value, expected, accuracy: 5e-9 * abs(expected), "\(c.name) at θ \(theta), β \(beta)")
            }
            for point in tight(c)["devfun0_points"] as! [[String: Any]] {
                let theta = (point["theta"] as! [NSNumber]).map(\.doubleValue)
                let expected = (point["value"] as! NSNumber).doubleValue
                XCTAssertEqual(try prepared.jointDeviance(theta).deviance, expected, accuracy: 5e-9 * abs(expected), "\(c.name) nAGQ = 0 at θ \(theta)")
            }
        }
    }

    /// Every fit against lme4's: the deviance no more than 1e-6 relative above glmer's default
    /// fit and within 1e-7 of the converged one; θ within 2e-3; β within 1e-3 SE; SEs (from the
    /// Hessian, and from R_X) within 1e-3 relative; conditional modes within 1e-3 of their
    /// conditional SD, and those SDs within 1e-3 relative; the fit statistics lme4's.
    func testFitsAreLme4s() throws {
        for c in Self.cases.values.sorted(by: { $0.name < $1.name }) {
            let fit = try GeneralizedLinearMixedModel.fit(c.formula, data: try data(c), options: c.options)
            let t = tight(c)
            let name = c.name
            let criterion = c.nodes == 1 ? "deviance_laplace" : "objective"
            let converged = (t[criterion] as! NSNumber).doubleValue, glmer = c.number(criterion)
            XCTAssertLessThanOrEqual(fit.deviance, glmer + 1e-6 * abs(glmer), name)
            XCTAssertEqual(fit.deviance, converged, accuracy: 1e-7 * abs(converged), name)
            let theta = (t["theta"] as! [NSNumber]).map(\.doubleValue)
            for (a, b) in zip(fit.theta, theta) { XCTAssertEqual(a, b, accuracy: 2e-3 * max(1, abs(b)), "\(name) θ") }
            let beta = (t["beta"] as! [String: NSNumber]).mapValues(\.doubleValue)
            let se = (t["se"] as! [String: NSNumber]).mapValues(\.doubleValue)
            let seRX = (t["se_rx"] as! [String: NSNumber]).mapValues(\.doubleValue)
            XCTAssertEqual(Set(fit.fixedNames), Set(beta.keys), name)
            XCTAssertEqual(fit.covarianceSource, (t["hessian_used"] as! Bool) ? "Hessian" : "R_X", name)
            let p = fit.fixedNames.count
            for (j, n) in fit.fixedNames.enumerated() {
                XCTAssertEqual(fit.beta[j], beta[n]!, accuracy: 1e-3 * se[n]!, "\(name) β \(n)")
                XCTAssertEqual(fit.standardErrors[j], se[n]!, accuracy: 1e-3 * se[n]!, "\(name) SE \(n)")
                XCTAssertEqual(fit.rxCovariance[j + j * p].squareRoot(), seRX[n]!, accuracy: 1e-3 * seRX[n]!, "\(name) SE (R_X) \(n)")
            }
            let df = Double(fit.df)
            XCTAssertEqual(fit.aic, fit.deviance + 2 * df, accuracy: 1e-9)
            XCTAssertEqual(fit.residualDF, (t["df_resid"] as! NSNumber).intValue, name)
            if c.nodes == 1 {
                XCTAssertEqual(fit.logLik, (t["logLik"] as! NSNumber).doubleValue, accuracy: 1e-7 * abs(fit.logLik), name)
                XCTAssertEqual(fit.bic, (t["BIC"] as! NSNumber).doubleValue, accuracy: 1e-7 * abs(fit.bic), name)
                XCTAssertEqual(fit.devianceResiduals, (t["deviance_resid"] as! NSNumber).doubleValue, accuracy: 1e-5 * fit.devianceResiduals, name)
            }
            // Conditional modes and SDs, term by term in lme4's order (levels in byte order).
            let modes = t["ranef"] as! [String: [NSNumber]], sds = t["condsd"] as! [String: [NSNumber]]
            for (k, term) in fit.terms.enumerated() {
                let key = modes.keys.count == 1 ? modes.keys.first! : (modes[term.group] != nil ? term.group : "mm")
                let expectedModes = modes[key]!.map(\.doubleValue), expectedSDs = sds[key]!.map(\.doubleValue)
                XCTAssertEqual(fit.conditionalModes[k].count, expectedModes.count, name)
                for l in expectedModes.indices {
                    XCTAssertEqual(fit.conditionalModes[k][l], expectedModes[l], accuracy: 1e-3 * expectedSDs[l], "\(name) mode \(term.group) \(l)")
                    XCTAssertEqual(fit.conditionalSDs[k][l], expectedSDs[l], accuracy: 1e-3 * expectedSDs[l], "\(name) cond. SD \(term.group) \(l)")
                }
            }
        }
    }
}
