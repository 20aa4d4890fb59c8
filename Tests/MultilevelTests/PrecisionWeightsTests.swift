import Foundation
import XCTest
@testable import Multilevel

/// Precision weights (`--weights`, lmer's `weights =`): the rows scaled by √w in the one pass,
/// the criterion minus Σ log w. The lme4 references are in `ReferenceFitTests`; here the
/// checks of the weights, the output, and the paths besides the direct fit.
final class PrecisionWeightsTests: ScratchDirectoryTestCase {
    let formula = "Reaction ~ Days + (Days | Subject)"

    /// The sleepstudy_weights rows with the weight of data row `row` (0-based) replaced.
    func data(replacingWeightOf row: Int, with value: String) throws -> String {
        var lines = try String(contentsOfFile: Fixtures.path("sleepstudy_weights.csv"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var fields = lines[row + 1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        fields[3] = value
        lines[row + 1] = fields.joined(separator: ",")
        return try write(lines.joined(separator: "\n"), to: "weights-\(row).csv")
    }

    func testBadWeightsAreOneLineNamingTheLine() throws {
        for (value, expected) in [("-1", "line 6: the weight in column 'w' is -1; precision weights must be positive"),
                                  ("0", "line 6: the weight in column 'w' is 0; precision weights must be positive"),
                                  ("Inf", "line 6: column 'w' holds Inf, not a finite number")] {
            let path = try data(replacingWeightOf: 4, with: value)
            let run = try mlm(["fit", path, "--formula", formula, "--weights", "w"])
            XCTAssertEqual(run.status, 1, value)
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
            XCTAssertTrue(run.stderr.contains(expected), run.stderr)
        }
        let text = try data(replacingWeightOf: 4, with: "\"heavy\"")
        for (arguments, expected) in [
            ([text, "--formula", formula, "--weights", "w"], "the weights column 'w' is not numeric: column 'w' holds strings"),
            ([Fixtures.path("sleepstudy_weights.csv"), "--formula", formula, "--weights", "v"], "no column 'v' in"),
            ([Fixtures.path("sleepstudy_weights.csv"), "--formula", formula, "--weights", "w", "--weights-kind", "sampling"],
             "--weights-kind must be precision"),
        ] {
            let run = try mlm(["fit"] + arguments)
            XCTAssertEqual(run.status, 1, arguments.joined(separator: " "))
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
            XCTAssertTrue(run.stderr.contains(expected), run.stderr)
        }
    }

    /// A missing weight drops its row, as lme4's na.action does (lme4: 179 observations); the
    /// summary and the JSON name the weights as lme4's summary does.
    func testMissingWeightDropsTheRowAndOutputsNameTheWeights() throws {
        let path = try data(replacingWeightOf: 0, with: "NA")
        let run = try mlm(["fit", path, "--formula", formula, "--weights", "w", "--json", temporary("fit.json")])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("Weights: w\n"), run.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: temporary("fit.json")))) as! [String: Any]
        XCTAssertEqual(json["nobs"] as? Int, 179)
        XCTAssertEqual(json["rows_dropped"] as? Int, 1)
        XCTAssertEqual(json["weights"] as? String, "w")
        let unweighted = try mlm(["fit", Fixtures.path("sleepstudy_weights.csv"), "--formula", formula, "--json", "-"])
        let plain = try JSONSerialization.jsonObject(with: Data(unweighted.stdout.utf8)) as! [String: Any]
        XCTAssertTrue(plain["weights"] is NSNull)
        XCTAssertFalse(unweighted.stdout.contains("Weights:"))
    }

    /// Weights of 1 are no weights: the same fit to the bit.
    func testUnitWeightsGiveTheUnweightedFit() throws {
        let text = try String(contentsOfFile: Fixtures.path("sleepstudy.csv"), encoding: .utf8)
        let lines = text.split(separator: "\n").enumerated().map { $0.offset == 0 ? $0.element + ",\"one\"" : $0.element + ",1" }
        let data = try openTable(path: write(lines.joined(separator: "\n"), to: "ones.csv"), table: nil)
        let plain = try LinearMixedModel.fit(formula, data: data)
        var options = FitOptions()
        options.weights = "one"
        let weighted = try LinearMixedModel.fit(formula, data: data, options: options)
        XCTAssertEqual(weighted.objective, plain.objective)
        XCTAssertEqual(weighted.theta, plain.theta)
        XCTAssertEqual(weighted.beta, plain.beta)
    }

    /// The iterative path (exact traces) and the bootstrap take the weighted cross-products as
    /// they are: the iterative fit is the direct one, and the bootstrap runs and centres on it.
    func testIterativePathAndBootstrapUseTheWeights() throws {
        let data = try openTable(path: Fixtures.path("sleepstudy_weights.csv"), table: nil)
        var options = FitOptions()
        options.weights = "w"
        let direct = try LinearMixedModel.fit(formula, data: data, options: options)
        options.solver = .iterative
        options.iterative.exactTraces = true
        let iterative = try LinearMixedModel.fit(formula, data: data, options: options)
        XCTAssertEqual(iterative.objective, direct.objective, accuracy: 1e-8 * direct.objective)
        for (a, b) in zip(iterative.theta, direct.theta) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(abs(b), 0.1)) }
        XCTAssertEqual(direct.objective, 1733.68356258791, accuracy: 1e-6)   // lme4's REMLcrit
        for fit in [direct, iterative] {
            let boot = try XCTUnwrap(ParametricBootstrap.run(fit, options: BootstrapOptions(replicates: 40, seed: 3, threads: 2)))
            XCTAssertEqual(boot.failed, 0)
            let sigma = boot.replicates.map(\.sigma).sorted()[20]
            XCTAssertEqual(sigma, fit.sigma, accuracy: 0.15 * fit.sigma)
        }
    }

    /// `compare` refits each model by ML with the weights: the full model's deviance is lme4's.
    func testCompareUsesTheWeights() throws {
        let run = try mlm(["compare", Fixtures.path("sleepstudy_weights.csv"), "--formula", "Reaction ~ 1 + (Days | Subject)",
                           "--formula", formula, "--weights", "w", "--json", "-"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let models = json["models"] as! [[String: Any]]
        XCTAssertEqual(models[1]["deviance"] as! Double, 1742.10657152785, accuracy: 1e-6)   // lme4's deviance, ML
    }
}
