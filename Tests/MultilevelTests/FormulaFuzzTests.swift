import Foundation
import XCTest
@testable import Multilevel

/// Whatever the formula, parsing, binding and fitting end in a result or in one `InputError` line:
/// no crash (deep nesting used to overflow the stack), no hang, no multi-line message.
final class FormulaFuzzTests: ScratchDirectoryTestCase {
    // MARK: Deep nesting

    private func parseMessage(_ text: String) -> String {
        message { try Formula.parse(text) }
    }

    /// 20,000 parentheses, `I(`, `log(` or 100,000 signs: one error line, not SIGSEGV.
    func testDeepNestingIsAnErrorNotACrash() {
        let n = 20_000
        let cases = [
            "y ~ " + String(repeating: "(", count: n) + "x" + String(repeating: ")", count: n),
            "y ~ " + String(repeating: "I(", count: n) + "x" + String(repeating: ")", count: n),
            "y ~ I(" + String(repeating: "log(", count: n) + "x" + String(repeating: ")", count: n + 1),
            "y ~ I(" + String(repeating: "(", count: n) + "x" + String(repeating: ")", count: n + 1),
            "y ~ " + String(repeating: "-", count: 100_000) + "1",
            "y ~ I(" + String(repeating: "-", count: 100_000) + "x)",
            "y ~ I(x" + String(repeating: "^x", count: n) + ")",
            "y ~ x" + String(repeating: ":x", count: n),
            "y ~ x" + String(repeating: "*x", count: n),
            "y ~ I(x" + String(repeating: " + x", count: n) + ")",
        ]
        for text in cases {
            let m = parseMessage(text)
            XCTAssertTrue(m.hasPrefix("formula: nested too deeply (more than 200 levels"), String(m.prefix(160)))
            XCTAssertLessThan(m.count, 400, "the message quotes a formula of any length in a bounded line")
        }
        // Deep text where no tree is built fails as any syntax error does.
        for text in ["y ~ (1 | " + String(repeating: "(", count: n), String(repeating: "(", count: n) + "y ~ x"] {
            XCTAssertLessThan(parseMessage(text).count, 400)
        }
        // Just inside the limit is fine.
        let nested = "y ~ " + String(repeating: "(", count: 90) + "x" + String(repeating: ")", count: 90) + " + (1 | g)"
        XCTAssertNoThrow(try Formula.parse(nested))
    }

    /// A long sum is flat, not deep: 50,000 terms parse (and collapse to one).
    func testLongSumsAreNotNesting() throws {
        let formula = try Formula.parse("Reaction ~ " + Array(repeating: "Days", count: 50_000).joined(separator: " + ")
                                        + " - 1 + (1 | Subject)")
        XCTAssertEqual(formula.fixed.terms.map(\.name), ["Days"])
        XCTAssertFalse(formula.fixed.intercept)
        // A power beyond the number of variables stops early.
        XCTAssertEqual(try Formula.parse("y ~ (a + b + c)^999 + (1 | g)").fixed.terms.count, 7)
    }

    // MARK: Random formulas

    /// sleepstudy with a second grouping factor, a weight and a string column.
    private func data() throws -> String {
        let lines = try String(contentsOfFile: Fixtures.path("sleepstudy.csv"), encoding: .utf8).split(separator: "\n")
        var text = String(lines[0]) + ",g2,w,s\n"
        for (i, line) in lines.dropFirst().enumerated() {
            text += line + ",\"\(["A", "B", "C"][i % 3])\",\(1 + Double(i % 4) / 4),\"\(["u", "v"][i % 2])\"\n"
        }
        return try write(text, to: "fuzz.csv")
    }

    private static let names = ["Reaction", "Days", "Subject", "g2", "w", "s", "nope", "`Days`", "."]
    private static let symbols = ["~", "+", "-", "*", "/", ":", "^", "(", ")", "|", "||", ",", "=", "0", "1", "2", "1e400",
                                  "Inf", "-1", "I(", "log(", "exp(", "sqrt(", "abs(", "factor(", "mm(", "cbind(", "weights",
                                  "foo(", "`", "#", "\n", "1e-300", "1.5"]

    /// A random sequence of formula tokens, usually after a plausible start.
    private static func randomTokens(_ rng: inout Xoshiro256) -> String {
        var parts: [String] = rng.nextInt(below: 4) == 0 ? [] : ["Reaction", "~"]
        for _ in 0..<(1 + rng.nextInt(below: 14)) {
            parts.append(rng.nextInt(below: 2) == 0 ? names[rng.nextInt(below: names.count)]
                         : symbols[rng.nextInt(below: symbols.count)])
        }
        return parts.joined(separator: rng.nextInt(below: 3) == 0 ? "" : " ")
    }

    private static let responses = ["Reaction", "log(Reaction)", "I(Reaction / 100)", "sqrt(Reaction)", "w", "Days", "Subject", "s"]
    private static let fixedTerms = ["Days", "g2", "s", "factor(Days)", "I(Days^2)", "log(Days + 1)", "Days:g2", "Days * s",
                                     "exp(Days)", "sqrt(Days)", "0", "1", "- 1", "w", "I(w * 2)", "Subject", "log(Days)",
                                     "(Days + w)^2", "Days / g2", "abs(Days - 4)", "I(Days * 1e200)", "I(Days + 1e12)"]
    private static let randomTerms = ["(1 | Subject)", "(Days | Subject)", "(Days || Subject)", "(1 | g2)",
                                      "(1 | Subject/g2)", "(1 | Subject:g2)", "(0 + Days | g2)", "(1 | mm(Subject, g2))",
                                      "(1 | mm(Subject, g2, weights = cbind(w, w)))", "(s | Subject)", "(1 | s)",
                                      "(w | Subject)", "(1 | Days)", "(factor(Days) | Subject)", "(1 | w)"]

    /// A random formula of the accepted syntax (which may still not fit the data).
    private static func randomFormula(_ rng: inout Xoshiro256) -> String {
        var terms: [String] = []
        for _ in 0..<rng.nextInt(below: 4) { terms.append(fixedTerms[rng.nextInt(below: fixedTerms.count)]) }
        for _ in 0..<rng.nextInt(below: 3) { terms.append(randomTerms[rng.nextInt(below: randomTerms.count)]) }
        if terms.isEmpty { terms = ["1"] }
        return responses[rng.nextInt(below: responses.count)] + " ~ " + terms.joined(separator: " + ")
    }

    /// 1,000 formulas, half random tokens and half random valid formulas, parsed, bound and fitted
    /// in-process on sleepstudy: each is a fit or one InputError line.
    func testRandomFormulasFitOrFailInOneLine() throws {
        let source = try CSVSource(path: try data())
        var rng = Xoshiro256(seed: 20_261_202)
        var fitted = 0, refused = 0
        let start = Date()
        for k in 0..<1000 {
            let text = k % 2 == 0 ? Self.randomTokens(&rng) : Self.randomFormula(&rng)
            let t0 = Date()
            do {
                let result = try LinearMixedModel.fit(text, data: source, options: FitOptions(threads: 1))
                XCTAssertTrue(result.beta.allSatisfy(\.isFinite) && result.sigma.isFinite, text)
                // No value of these data is missing: a fit that dropped rows took something for missing.
                XCTAssertEqual(result.nobs, 180, text)
                XCTAssertFalse(result.terms.isEmpty, "a fit without random effects: \(text)")
                _ = result.summary()
                fitted += 1
            } catch let error as InputError {
                XCTAssertFalse(error.message.isEmpty, text)
                XCTAssertFalse(error.message.contains("\n"), "\(text): \(error.message)")
                refused += 1
            } catch {
                XCTFail("\(text): not an InputError: \(error)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(t0), 5, "slow: \(text)")
        }
        XCTAssertGreaterThan(fitted, 150)
        XCTAssertGreaterThan(refused, 400)
        XCTAssertLessThan(Date().timeIntervalSince(start), 25)
    }

    /// 50 of them through the binary, and deep nesting: exit 0, or exit 1 with exactly one line `mlm: error: …`.
    func testRandomFormulasThroughTheBinary() throws {
        let path = try data()
        var rng = Xoshiro256(seed: 7)
        let deep = ["Reaction ~ " + String(repeating: "(", count: 20_000) + "Days" + String(repeating: ")", count: 20_000),
                    "Reaction ~ " + String(repeating: "-", count: 100_000) + "Days + (1 | Subject)"]
        for k in 0..<(50 + deep.count) {
            let text = k >= 50 ? deep[k - 50] : k % 2 == 0 ? Self.randomTokens(&rng) : Self.randomFormula(&rng)
            let run = try mlm(["fit", path, "--formula", text, "--threads", "1"])
            XCTAssertFalse(run.signalled, text)
            if run.status == 0 {
                XCTAssertTrue(run.stdout.hasPrefix("Linear mixed model fit by REML"), text)
            } else {
                XCTAssertEqual(run.status, 1, text)
                let lines = run.stderr.split(separator: "\n", omittingEmptySubsequences: false)
                XCTAssertEqual(lines.count, 2, "\(text): \(run.stderr)")
                XCTAssertTrue(run.stderr.hasPrefix("mlm: error: "), "\(text): \(run.stderr)")
            }
        }
    }
}
