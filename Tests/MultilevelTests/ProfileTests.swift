import Foundation
import XCTest
@testable import Multilevel

/// Profile-likelihood intervals against lme4's `confint(m, method = "profile")`.
final class ProfileTests: XCTestCase {
    /// Every limit for sleepstudy's REML fit within 1e-3 of lme4's (relative; absolute for the
    /// correlation), and each trace's ζ rising through the limits; every point of every profile
    /// (SDs, correlation, σ and β) optimised by Newton, none handed to BOBYQA.
    func testIntervalsMatchLme4OnSleepstudy() throws {
        let fitted = try LinearMixedModel.fit("Reaction ~ Days + (Days | Subject)",
                                              data: openTable(path: Fixtures.path("sleepstudy.csv"), table: nil))
        let result = try ProfileLikelihood.run(fitted, options: ProfileOptions(threads: 2))!
        try checkAgainstLme4(result)
        for (interval, effort) in zip(result.intervals, result.effort) {
            XCTAssertGreaterThan(effort.points, 0, interval.parameter.label)
            XCTAssertGreaterThanOrEqual(effort.gradients, effort.points, "a gradient at every point: \(interval.parameter.label)")
            XCTAssertEqual(effort.fallbacks, 0, interval.parameter.label)
        }
    }

    /// A fit by BOBYQA is profiled by BOBYQA (no gradients), to the same limits.
    func testBobyqaFitIsProfiledByBobyqa() throws {
        var options = FitOptions()
        options.optimizer = .bobyqa
        let fitted = try LinearMixedModel.fit("Reaction ~ Days + (Days | Subject)",
                                              data: openTable(path: Fixtures.path("sleepstudy.csv"), table: nil), options: options)
        let result = try ProfileLikelihood.run(fitted, options: ProfileOptions(threads: 2))!
        try checkAgainstLme4(result)
        XCTAssertEqual(result.totalEffort.gradients, 0)
        XCTAssertGreaterThan(result.totalEffort.evaluations, 0)
    }

    func checkAgainstLme4(_ result: ProfileResult, file: StaticString = #filePath, line: UInt = #line) throws {
        let reference = try ConfintFixture.load().profile
        XCTAssertEqual(result.intervals.count, reference.count, file: file, line: line)
        for (mine, lme4) in zip(result.intervals, reference) {
            XCTAssertEqual(mine.parameter.label, lme4.label, file: file, line: line)
            let tolerance = { (x: Double) in 1e-3 * (mine.parameter.kind == .cor ? 1 : abs(x)) }
            XCTAssertEqual(mine.lower, lme4.lower, accuracy: tolerance(lme4.lower), "\(lme4.label) lower", file: file, line: line)
            XCTAssertEqual(mine.upper, lme4.upper, accuracy: tolerance(lme4.upper), "\(lme4.label) upper", file: file, line: line)
        }
        for (parameter, points) in result.traces {
            let values = points.map(\.value), zetas = points.map(\.zeta)
            XCTAssertEqual(values, values.sorted(), parameter.label, file: file, line: line)
            XCTAssertEqual(zetas, zetas.sorted(), "ζ increases with \(parameter.label)", file: file, line: line)
            XCTAssertLessThanOrEqual(zetas.first!, -1.96, parameter.label, file: file, line: line)
            XCTAssertGreaterThanOrEqual(zetas.last!, 1.96, parameter.label, file: file, line: line)
        }
    }

    // MARK: The deviance in ω and its derivatives

    func crossProducts(_ dataset: String, _ formula: String) throws -> CrossProducts {
        try ModelFrame.scan(Formula.parse(formula), source: openTable(path: Fixtures.path(dataset), table: nil)).crossProducts()
    }

    /// The ω-gradient (every component free, unscaled) against central differences of d(ω),
    /// Richardson-extrapolated, to 1e-6 of the gradient's largest entry: sleepstudy's correlated
    /// slopes (SDs, a correlation, σ) and penicillin's crossed intercepts, away from the optimum.
    func testGradientMatchesFiniteDifferencesOfTheDeviance() throws {
        let cases: [(String, String, [Double])] = [
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", [21.5, 0.35, 7.2, 27.0]),
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", [30.0, -0.6, 4.1, 24.0]),
            ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", [0.7, 2.4, 0.62]),
        ]
        for (dataset, formula, omega) in cases {
            let pls = try PenalizedLeastSquares(try crossProducts(dataset, formula), reml: false, ordering: .natural)
            let objective = ProfileDeviance(pls, omega: omega, free: Array(omega.indices), scale: omega.map { _ in 1 })
            let numeric = omega.indices.map { i -> Double in
                let h = 1e-3 * max(abs(omega[i]), 0.1)
                func at(_ s: Double) -> Double { var x = omega; x[i] += s; return objective.evaluate(x)!.deviance }
                return (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
            }
            let e = try XCTUnwrap(objective.evaluate(omega))
            let analytic = objective.gradient(omega, e)
            XCTAssertEqual(objective.derivatives(omega, e).gradient, analytic)
            let scale = numeric.map(abs).max()!
            XCTAssertGreaterThan(scale, 1, "\(dataset): a point away from the optimum")
            for i in omega.indices {
                XCTAssertEqual(analytic[i], numeric[i], accuracy: 1e-6 * scale, "\(dataset) ω[\(i)]: analytic \(analytic) numeric \(numeric)")
            }
        }
    }

    /// The curvature term C = Σ g_φ ∂²φ/∂ω∂ω' is exact: for a function linear in φ = (Σ_k, σ²),
    /// f = c'φ, whose gradient in ψ = (θ, σ²) is (∂φ/∂ψ)'c, C is its Hessian in ω (central differences).
    func testCurvatureIsTheHessianOfAFunctionLinearInTheCovariances() throws {
        let terms = try crossProducts("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)").terms
        let omega = [24.2, -0.09, 9.16, 25.5], c = [0.3, -1.2, 0.7, 0.05]
        // φ = (sd₁², sd₁sd₂ρ, sd₂², σ²) in ω; in ψ, Σ = σ²TT'.
        func f(omega w: [Double]) -> Double { c[0] * w[0] * w[0] + c[1] * w[0] * w[2] * w[1] + c[2] * w[2] * w[2] + c[3] * w[3] * w[3] }
        func f(psi t: [Double]) -> Double {
            c[0] * t[3] * t[0] * t[0] + c[1] * t[3] * t[0] * t[1] + c[2] * t[3] * (t[1] * t[1] + t[2] * t[2]) + c[3] * t[3]
        }
        let (theta, sigma) = try XCTUnwrap(ProfileCoordinates.thetaAndSigma(omega, terms: terms))
        let psi = theta + [sigma * sigma]
        let g = psi.indices.map { i -> Double in
            let h = 1e-6 * max(abs(psi[i]), 1)
            var plus = psi, minus = psi
            plus[i] += h
            minus[i] -= h
            return (f(psi: plus) - f(psi: minus)) / (2 * h)
        }
        let curvature = ProfileCoordinates.curvature(omega, theta: theta, terms: terms, gradient: g)
        for a in 0..<4 { for b in 0..<4 {
            let h = 1e-4
            func at(_ da: Double, _ db: Double) -> Double { var w = omega; w[a] += da; w[b] += db; return f(omega: w) }
            let numeric = (at(h, h) - at(h, -h) - at(-h, h) + at(-h, -h)) / (4 * h * h)
            XCTAssertEqual(curvature[a + b * 4], numeric, accuracy: 1e-5 * max(abs(numeric), 1), "C[\(a), \(b)]")
        } }
    }

    /// At the ML optimum (all of ω free) the information matrix approximates the Hessian of d(ω)
    /// (central differences of the analytic gradient) to 2e-2 of its largest entry.
    func testInformationApproximatesTheHessianAtTheOptimum() throws {
        for (dataset, formula) in [("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)"),
                                   ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)")] {
            let cp = try crossProducts(dataset, formula)
            let fit = try LinearMixedModel.fit(cp, options: FitOptions(reml: false))
            let values = ModelParameter.values(fit.varcorr, fit.sigma, fit.beta)
            let omega = Array(values[..<(values.count - fit.beta.count)])
            let pls = try PenalizedLeastSquares(cp, reml: false, ordering: .natural)
            let objective = ProfileDeviance(pls, omega: omega, free: Array(omega.indices), scale: omega.map { _ in 1 })
            let information = objective.derivatives(omega, try XCTUnwrap(objective.evaluate(omega))).information
            let hessian = try differenceHessian(at: omega) { objective.gradient($0, try XCTUnwrap(objective.evaluate($0))) }
            let scale = hessian.map(abs).max()!
            for (x, y) in zip(information, hessian) {
                XCTAssertEqual(x, y, accuracy: 2e-2 * scale, "\(dataset): information \(information) Hessian \(hessian)")
            }
        }
    }

    /// A variance at the boundary: six groups with identical means, so the group SD is
    /// estimated at 0 and its lower limit is the bound 0 (as lme4 reports it); the upper limit
    /// is positive and ζ reaches 1.96 there.
    func testLowerLimitAtTheBoundaryIsZero() throws {
        var csv = "g,y\n"
        for (k, g) in ["A", "B", "C", "D", "E", "F"].enumerated() {
            for d in [-2.0, -1, 0, 1, 2] { csv += "\(g),\(10 + d * Double(k + 1))\n" }
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("boundary-\(UUID()).csv").path
        try csv.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fitted = try LinearMixedModel.fit("y ~ 1 + (1 | g)", data: openTable(path: path, table: nil))
        XCTAssertEqual(fitted.theta[0], 0, accuracy: 1e-6)
        let result = try ProfileLikelihood.run(fitted, options: ProfileOptions(threads: 1))!
        let sd = result.intervals[0]
        XCTAssertEqual(sd.parameter.kind, .sd)
        XCTAssertEqual(sd.lower, 0)
        XCTAssertGreaterThan(sd.upper, 0.1)
        let sigma = result.intervals[1]
        XCTAssertLessThan(sigma.lower, sigma.parameter.estimate)
        XCTAssertGreaterThan(sigma.upper, sigma.parameter.estimate)
    }
}
