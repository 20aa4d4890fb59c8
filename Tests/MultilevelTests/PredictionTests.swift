import Foundation
import XCTest

/// `mlm predict` against lme4's `predict(m, newdata)` on exam: rows of known schools and of
/// schools the fit never saw, conditional (new levels get 0) and at population level.
final class PredictionTests: ScratchDirectoryTestCase {
    func testPredictionsMatchLme4() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("exam_predict.json")))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let newdata = Fixtures.path("exam_newdata.csv")
        // BOBYQA stops where lme4's BOBYQA does, so predict's arithmetic is checked to 1e-8; Newton
        // converges further (on the second model its REML criterion is 3.7e-7 below lme4's, θ moves
        // by 2e-5), which moves the predictions by up to 1.1e-5.
        for (k, model) in (json["models"] as! [[String: Any]]).enumerated() {
            for (optimizer, tolerance) in [("bobyqa", 1e-8), ("newton", 2e-5)] {
                let fitted = temporary("fit\(k)-\(optimizer).json")
                let fit = try mlm(["fit", Fixtures.path("exam.csv"), "--formula", model["formula"] as! String, "--json", fitted,
                                   "--optimizer", optimizer])
                XCTAssertEqual(fit.status, 0, fit.stderr)
                for (kind, flag) in [("conditional", [String]()), ("population", ["--population"])] {
                    let out = temporary("pred\(k)-\(kind).csv")
                    let run = try mlm(["predict", newdata, "--model", fitted, "--out", out, "--chunk-rows", "7"] + flag)
                    XCTAssertEqual(run.status, 0, run.stderr)
                    let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
                    XCTAssertEqual(lines.first, "prediction")
                    let mine = lines.dropFirst().map { Double($0)! }
                    let theirs = model[kind] as! [Double]
                    XCTAssertEqual(mine.count, theirs.count)
                    for (i, (a, b)) in zip(mine, theirs).enumerated() {
                        XCTAssertEqual(a, b, accuracy: tolerance, "\(model["formula"]!) \(optimizer) \(kind) row \(i + 1)")
                    }
                }
            }
        }
    }

    /// Bad input: a model file that is not JSON, and new data missing a predictor, fail in one line.
    func testPredictErrors() throws {
        let notJSON = try write("not json", to: "model.json")
        let run = try mlm(["predict", Fixtures.path("exam_newdata.csv"), "--model", notJSON])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, "mlm: error: the model file '\(notJSON)' is not JSON\n")
        let fitted = temporary("fit.json")
        XCTAssertEqual(try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)",
                                "--json", fitted]).status, 0)
        let missing = try mlm(["predict", Fixtures.path("exam_newdata.csv"), "--model", fitted])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("Days"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1)
    }
}
