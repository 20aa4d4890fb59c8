import XCTest
@testable import Multilevel

/// Parsing, expansion and naming of lme4 formulas, and the parser's error messages.
final class FormulaTests: XCTestCase {
    private func fixedNames(_ formula: Formula) -> [String] { formula.fixed.terms.map(\.name) }

    /// Each random term as "effects | group", effects as lme4 would write them, e.g. "1 + Days | Subject".
    private func randomNames(_ formula: Formula) -> [String] {
        formula.random.map { term in
            let effects = (term.effects.intercept ? ["1"] : ["0"]) + term.effects.terms.map(\.name)
            return effects.joined(separator: " + ") + " | " + term.grouping.name
        }
    }

    private func assertError(_ text: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Formula.parse(text), file: file, line: line) { error in
            guard let error = error as? InputError else { return XCTFail("not an InputError: \(error)", file: file, line: line) }
            XCTAssertTrue(error.message.hasPrefix("formula: "), error.message, file: file, line: line)
            XCTAssertFalse(error.message.contains("\n"), error.message, file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "\(error.message) lacks \(fragment)", file: file, line: line)
            }
        }
    }

    // MARK: The reference fits

    func testSleepstudyCorrelated() throws {
        let f = try Formula.parse("Reaction ~ Days + (Days | Subject)")
        XCTAssertEqual(f.response, .column("Reaction"))
        XCTAssertTrue(f.fixed.intercept)
        XCTAssertEqual(f.fixed.terms, [Term([.column("Days")])])
        XCTAssertEqual(f.random, [RandomTerm(effects: TermList(intercept: true, terms: [Term([.column("Days")])]),
                                             grouping: .factor(["Subject"]))])
        XCTAssertEqual(f.columns, ["Reaction", "Days", "Subject"])
        XCTAssertEqual(f.text, "Reaction ~ Days + (Days | Subject)")
    }

    func testSleepstudyUncorrelated() throws {
        let f = try Formula.parse("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")
        XCTAssertEqual(fixedNames(f), ["Days"])
        XCTAssertEqual(randomNames(f), ["1 | Subject", "0 + Days | Subject"])
    }

    func testDyestuff() throws {
        let f = try Formula.parse("Yield ~ 1 + (1 | Batch)")
        XCTAssertTrue(f.fixed.intercept)
        XCTAssertEqual(f.fixed.terms, [])
        XCTAssertEqual(randomNames(f), ["1 | Batch"])
        XCTAssertEqual(f.columns, ["Yield", "Batch"])
    }

    func testPenicillinCrossed() throws {
        let f = try Formula.parse("diameter ~ 1 + (1 | plate) + (1 | sample)")
        XCTAssertEqual(randomNames(f), ["1 | plate", "1 | sample"])
    }

    func testPastesNested() throws {
        let f = try Formula.parse("strength ~ 1 + (1 | batch/cask)")
        XCTAssertEqual(f.random.map(\.grouping), [.factor(["batch"]), .factor(["cask", "batch"])])
        XCTAssertEqual(randomNames(f), ["1 | batch", "1 | cask:batch"])
        XCTAssertEqual(f.columns, ["strength", "batch", "cask"])
    }

    func testExamOrdersTermsByDegree() throws {
        let f = try Formula.parse("normexam ~ standLRT*schavg + sex + schgend + (standLRT | school)")
        XCTAssertEqual(fixedNames(f), ["standLRT", "schavg", "sex", "schgend", "standLRT:schavg"])
        XCTAssertEqual(randomNames(f), ["1 + standLRT | school"])
        XCTAssertEqual(f.columns, ["normexam", "standLRT", "schavg", "sex", "schgend", "school"])
    }

    func testInstEval() throws {
        let f = try Formula.parse("y ~ 1 + service*dept + (1 | s) + (1 | d)")
        XCTAssertEqual(fixedNames(f), ["service", "dept", "service:dept"])
        XCTAssertEqual(randomNames(f), ["1 | s", "1 | d"])
    }

    func testMultipleMembership() throws {
        let f = try Formula.parse("y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)")
        let mm = Grouping.multipleMembership(groups: ["school1", "school2", "school3"], weights: ["w1", "w2", "w3"])
        XCTAssertEqual(f.random.map(\.grouping), [mm, .factor(["nbhd"])])
        XCTAssertEqual(mm.name, "mm(school1, school2, school3, weights = cbind(w1, w2, w3))")
        XCTAssertEqual(mm.columns, ["school1", "school2", "school3", "w1", "w2", "w3"])
        XCTAssertEqual(f.columns, ["y", "x", "school1", "school2", "school3", "w1", "w2", "w3", "nbhd"])
    }

    func testMultipleMembershipWithoutWeights() throws {
        let f = try Formula.parse("y ~ (1|mm(a,b))")
        XCTAssertEqual(f.random[0].grouping, .multipleMembership(groups: ["a", "b"], weights: []))
        XCTAssertEqual(f.random[0].grouping.name, "mm(a, b)")
    }

    // MARK: Expansions

    func testDoubleBarSplitsIntoUncorrelatedTerms() throws {
        XCTAssertEqual(randomNames(try Formula.parse("y ~ x + (x || g)")), ["1 | g", "0 + x | g"])
        XCTAssertEqual(randomNames(try Formula.parse("y ~ x + (1 + x || g)")), ["1 | g", "0 + x | g"])
        XCTAssertEqual(randomNames(try Formula.parse("y ~ (0 + x + z || g)")), ["0 + x | g", "0 + z | g"])
        XCTAssertEqual(randomNames(try Formula.parse("y ~ (x || a/b)")),
                       ["1 | a", "1 | b:a", "0 + x | a", "0 + x | b:a"])
    }

    func testGroupingInteractionAndDeepNesting() throws {
        let f = try Formula.parse("y ~ (1 | a:b) + (1 | a/b/c)")
        XCTAssertEqual(f.random.map(\.grouping),
                       [.factor(["a", "b"]), .factor(["a"]), .factor(["b", "a"]), .factor(["c", "b", "a"])])
        XCTAssertEqual(f.random.map(\.grouping.name), ["a:b", "a", "b:a", "c:b:a"])
    }

    func testCrossingExpandsAllInteractions() throws {
        let f = try Formula.parse("y ~ a*b*c")
        XCTAssertEqual(fixedNames(f), ["a", "b", "c", "a:b", "a:c", "b:c", "a:b:c"])
    }

    func testPowerNestingAndParenthesisedSums() throws {
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ (a + b + c)^2")), ["a", "b", "c", "a:b", "a:c", "b:c"])
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ (a + b):c")), ["a:c", "b:c"])
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ (a + b)/c")), ["a", "b", "a:b:c"])
    }

    func testDuplicatesAndReversedInteractionsCollapse() throws {
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ a:b + b:a + a + a")), ["a", "a:b"])
        // R orders a term's variables by first appearance, so b:a is named a:b here.
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ a + b + b:a")), ["a", "b", "a:b"])
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ x:f + f")), ["f", "x:f"])
    }

    func testInterceptRules() throws {
        XCTAssertTrue(try Formula.parse("y ~ x").fixed.intercept)
        XCTAssertFalse(try Formula.parse("y ~ x - 1").fixed.intercept)
        XCTAssertFalse(try Formula.parse("y ~ -1 + x").fixed.intercept)
        XCTAssertFalse(try Formula.parse("y ~ 0 + x").fixed.intercept)
        XCTAssertFalse(try Formula.parse("y ~ x + 0").fixed.intercept)
        XCTAssertTrue(try Formula.parse("y ~ 1 + x").fixed.intercept)
        XCTAssertTrue(try Formula.parse("y ~ 0 + x + 1").fixed.intercept)
        XCTAssertTrue(try Formula.parse("y ~ x - 0").fixed.intercept)
        XCTAssertEqual(fixedNames(try Formula.parse("y ~ 0 + x - 1")), ["x"])
        let f = try Formula.parse("y ~ (0 + x | g) + (-1 + x | h)")
        XCTAssertEqual(randomNames(f), ["0 + x | g", "0 + x | h"])
    }

    // MARK: Variables

    func testIdentityTransformsAreNamedAsRDeparsesThem() throws {
        let f = try Formula.parse("y ~ x + I(x^2) + I(x+1) + I(-x / 2*3) + I((x - 1)^-1) + I(x * 100000 + 0.001)")
        XCTAssertEqual(fixedNames(f), ["x", "I(x^2)", "I(x + 1)", "I(-x/2 * 3)", "I((x - 1)^-1)", "I(x * 1e+05 + 0.001)"])
        XCTAssertEqual(f.fixed.terms[1].variables, [.transform("I(x^2)", .binary("^", .column("x"), .number(2)))])
        XCTAssertEqual(f.fixed.terms[3].variables[0],
                       .transform("I(-x/2 * 3)", .binary("*", .binary("/", .negate(.column("x")), .number(2)), .number(3))))
        XCTAssertEqual(f.columns, ["y", "x"])
    }

    func testFunctionsAsTermsAndResponse() throws {
        let f = try Formula.parse("log(y) ~ sqrt(x) + exp(z):abs(w) + I(log(x + 1))")
        XCTAssertEqual(f.response, .transform("log(y)", .call("log", [.column("y")])))
        XCTAssertEqual(f.response.columns, ["y"])
        XCTAssertEqual(fixedNames(f), ["sqrt(x)", "I(log(x + 1))", "exp(z):abs(w)"])
        XCTAssertEqual(f.fixed.terms[1].variables[0],
                       .transform("I(log(x + 1))", .call("log", [.binary("+", .column("x"), .number(1))])))
        XCTAssertEqual(f.columns, ["y", "x", "z", "w"])
    }

    func testFactor() throws {
        let f = try Formula.parse("y ~ factor(x) + x + (factor(x) | g)")
        XCTAssertEqual(f.fixed.terms.map(\.variables), [[.factor("x")], [.column("x")]])
        XCTAssertEqual(fixedNames(f), ["factor(x)", "x"])
        XCTAssertEqual(f.random[0].effects.terms, [Term([.factor("x")])])
        XCTAssertEqual(f.columns, ["y", "x", "g"])
    }

    func testBackquotedNamesAndWhitespace() throws {
        let f = try Formula.parse("`my y`~\n\t`my x`+x.1 + x_2 + (1|`the group`)")
        XCTAssertEqual(f.response, .column("my y"))
        XCTAssertEqual(fixedNames(f), ["`my x`", "x.1", "x_2"])
        XCTAssertEqual(f.random[0].grouping, .factor(["the group"]))
        XCTAssertEqual(f.random[0].grouping.name, "`the group`")
        XCTAssertEqual(f.columns, ["my y", "my x", "x.1", "x_2", "the group"])
    }

    func testExpressionEvaluatesElementwise() {
        let e = Expression.binary("+", .call("log", [.column("x")]),
                                  .binary("^", .negate(.column("z")), .number(2)))
        XCTAssertEqual(e.columns, ["x", "z"])
        let values = e.evaluate(["x": [1, M_E, -1], "z": [2, 3, 0]], count: 3)
        XCTAssertEqual(values[0], 4, accuracy: 1e-12)
        XCTAssertEqual(values[1], 10, accuracy: 1e-12)
        XCTAssertTrue(values[2].isNaN)
        XCTAssertEqual(Expression.call("sqrt", [.binary("/", .number(8), .column("x"))])
            .evaluate(["x": [2, 0.5]], count: 2), [2, 4])
        XCTAssertEqual(Expression.call("abs", [.binary("-", .column("x"), .number(3))])
            .evaluate(["x": [1, 5]], count: 2), [2, 2])
        XCTAssertEqual(Expression.call("exp", [.number(0)]).evaluate([:], count: 2), [1, 1])
    }

    // MARK: Errors

    func testUnbalancedParentheses() {
        assertError("y ~ x + (1 | g", ["expected ')' at position 15", "\"y ~ x + (1 | g\""])
        assertError("y ~ (x + z", ["expected ')' at position 11"])
        assertError("y ~ x + z)", ["unmatched ')' at position 10"])
        assertError("y ~ I(x^2", ["expected ')' at position 10"])
    }

    func testMissingTilde() {
        assertError("y x", ["missing '~'", "\"y x\""])
        assertError("y + x ~ z", ["expected '~' at position 3"])
        assertError("", ["empty"])
    }

    func testEmptyResponseOrTerms() {
        assertError("~ x", ["missing response", "position 1"])
        assertError("y ~ ", ["missing terms after '~' at position 5"])
        assertError("y ~ x +", ["expected a term at position 8"])
        assertError("factor(y) ~ x", ["response must be numeric", "position 1"])
    }

    func testBarTerms() {
        assertError("y ~ (1 | )", ["grouping factor", "position 10"])
        assertError("y ~ (1 || )", ["grouping factor", "position 11"])
        assertError("y ~ x + 1 | g", ["'|' outside parentheses", "position 11"])
        assertError("y ~ x + (1 | g):z", ["added with '+'", "position 9"])
        assertError("y ~ ((1 | g) | h)", ["inside another", "position 6"])
        assertError("y ~ (0 | g)", ["no effects", "position 5"])
        assertError("y ~ (1 | factor(g))", ["grouping factor", "position 10"])
        assertError("y ~ ( | g)", ["expected terms before '|' at position 7"])
    }

    func testUnknownFunctionAndTrailingGarbage() {
        assertError("y ~ foo(x)", ["unknown function 'foo'", "at position 5"])
        assertError("y ~ I(foo(x))", ["unknown function 'foo'", "at position 7"])
        assertError("y ~ x z", ["unexpected 'z' at position 7"])
        assertError("y ~ x + z @", ["unexpected character '@' at position 11"])
        assertError("y ~ x ~ z", ["unexpected '~' at position 7"])
        assertError("y ~ mm(a, b)", ["only allowed as a grouping factor", "position 5"])
    }

    func testTermAlgebraErrors() {
        assertError("y ~ x - z", ["only 1 or 0 can be removed", "position 7"])
        assertError("y ~ x + 2", ["unexpected number 2", "position 9"])
        assertError("y ~ 1:x", ["'0' or '1' cannot be used with ':'", "position 5"])
        assertError("y ~ (a + b)^x", ["'^' needs a positive whole number", "position 13"])
        assertError("y ~ `x", ["unterminated", "position 5"])
        assertError("y ~ .", ["not supported", "position 5"])
    }

    func testMultipleMembershipErrors() {
        assertError("y ~ (1 | mm())", ["mm() needs at least one grouping column", "position 10"])
        XCTAssertThrowsError(try Formula.parse("y ~ (1 | mm(a, b, c, weights = cbind(u, v)))")) { error in
            XCTAssertEqual((error as? InputError)?.message,
                           "formula: mm() has 3 groups but 2 weights in \"mm(a, b, c, weights = cbind(u, v))\"")
        }
        assertError("y ~ (1 | mm(a, b, scale = TRUE))", ["unknown argument 'scale' of mm()", "position 19"])
        assertError("y ~ (1 | mm(a, b, weights = c(u, v)))", ["cbind", "position 29"])
    }
}
