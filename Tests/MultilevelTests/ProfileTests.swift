import Foundation
import XCTest
@testable import Multilevel

/// Profile-likelihood intervals against lme4's `confint(m, method = "profile")`.
final class ProfileTests: XCTestCase {
    /// Every limit for sleepstudy's REML fit within 1e-3 of lme4's (relative; absolute for the
    /// correlation), and each trace's ζ rising through the limits.
    func testIntervalsMatchLme4OnSleepstudy() throws {
        let fitted = try LinearMixedModel.fit("Reaction ~ Days + (Days | Subject)",
                                              data: openTable(path: Fixtures.path("sleepstudy.csv"), table: nil))
        let result = try ProfileLikelihood.run(fitted, options: ProfileOptions(threads: 2))!
        let reference = try ConfintFixture.load().profile
        XCTAssertEqual(result.intervals.count, reference.count)
        for (mine, lme4) in zip(result.intervals, reference) {
            XCTAssertEqual(mine.parameter.label, lme4.label)
            let tolerance = { (x: Double) in 1e-3 * (mine.parameter.kind == .cor ? 1 : abs(x)) }
            XCTAssertEqual(mine.lower, lme4.lower, accuracy: tolerance(lme4.lower), "\(lme4.label) lower")
            XCTAssertEqual(mine.upper, lme4.upper, accuracy: tolerance(lme4.upper), "\(lme4.label) upper")
        }
        for (parameter, points) in result.traces {
            let values = points.map(\.value), zetas = points.map(\.zeta)
            XCTAssertEqual(values, values.sorted(), parameter.label)
            XCTAssertEqual(zetas, zetas.sorted(), "ζ increases with \(parameter.label)")
            XCTAssertLessThanOrEqual(zetas.first!, -1.96, parameter.label)
            XCTAssertGreaterThanOrEqual(zetas.last!, 1.96, parameter.label)
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
