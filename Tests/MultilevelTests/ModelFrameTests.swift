import Foundation
import XCTest
@testable import Multilevel

/// How a formula meets the data: factor coding, missing rows, aliased columns, term expansion.
final class ModelFrameTests: ScratchDirectoryTestCase {
    func fit(_ dataset: String, _ formula: String, reml: Bool = true) throws -> FitResult {
        try LinearMixedModel.fit(formula, data: openTable(path: Fixtures.path(dataset), table: nil),
                                 options: FitOptions(reml: reml))
    }

    func csv(_ name: String, _ text: String) throws -> CSVSource {
        try CSVSource(path: write(text, to: "\(name).csv"))
    }

    /// sleepstudy with Subject written as a number instead of a quoted string, and Days missing in `drop` rows.
    func sleepstudyText(numericSubject: Bool, missingDays: Set<Int> = []) throws -> String {
        let lines = try String(contentsOfFile: Fixtures.path("sleepstudy.csv"), encoding: .utf8).split(separator: "\n")
        var out = String(lines[0]) + "\n"
        for (i, line) in lines.dropFirst().enumerated() {
            var fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if numericSubject { fields[2] = fields[2].replacingOccurrences(of: "\"", with: "") }
            if missingDays.contains(i) { fields[1] = "NA" }
            out += fields.joined(separator: ",") + "\n"
        }
        return out
    }

    func testNumericGroupingColumnIsAFactor() throws {
        let quoted = try fit("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)")
        let data = try csv("numeric-subject", sleepstudyText(numericSubject: true))
        XCTAssertEqual(try data.columnType("Subject"), .numeric)
        let numeric = try LinearMixedModel.fit("Reaction ~ Days + (Days | Subject)", data: data)
        XCTAssertEqual(numeric.objective, quoted.objective, accuracy: 1e-9)
        XCTAssertEqual(numeric.terms[0].levels, quoted.terms[0].levels)   // 308…372: same order either way
    }

    func testFactorOfANumericColumnUsesTreatmentContrastsInNumericOrder() throws {
        let result = try fit("sleepstudy.csv", "Reaction ~ factor(Days) + (1 | Subject)")
        XCTAssertEqual(result.fixedNames, ["(Intercept)"] + (1...9).map { "factor(Days)\($0)" })
        // lme4: fixef(lmer(Reaction ~ factor(Days) + (1|Subject), sleepstudy))[["factor(Days)9"]] = 94.19941667 (lme4 1.1-31)
        XCTAssertEqual(result.beta[9], 94.19941667, accuracy: 1e-4)
    }

    func testRowsWithMissingValuesAreDroppedAndCounted() throws {
        let data = try csv("missing", sleepstudyText(numericSubject: false, missingDays: [0, 5, 17]))
        let result = try LinearMixedModel.fit("Reaction ~ Days + (Days | Subject)", data: data)
        XCTAssertEqual(result.nobs, 177)
        XCTAssertEqual(result.droppedRows, 3)
        XCTAssertTrue(result.summary().contains("Rows dropped for missing values: 3"))
    }

    func testDoubleBarEqualsSeparateTerms() throws {
        let separate = try fit("sleepstudy.csv", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")
        let doubleBar = try fit("sleepstudy.csv", "Reaction ~ Days + (Days || Subject)")
        XCTAssertEqual(doubleBar.objective, separate.objective, accuracy: 1e-9)
        XCTAssertEqual(doubleBar.varcorr.map(\.group), ["Subject", "Subject.1", "Residual"])
    }

    func testAliasedColumnIsDroppedWithAMessage() throws {
        let plain = try fit("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)")
        let aliased = try fit("sleepstudy.csv", "Reaction ~ Days + I(2 * Days) + (Days | Subject)")
        XCTAssertEqual(aliased.fixedNames, ["(Intercept)", "Days"])
        XCTAssertEqual(aliased.objective, plain.objective, accuracy: 1e-6)
        XCTAssertTrue(aliased.notes.contains { $0.contains("rank deficient") && $0.contains("I(2 * Days)") }, "\(aliased.notes)")
    }

    func testInteractionGroupingFactorHasOneLevelPerObservedPair() throws {
        let nested = try fit("pastes.csv", "strength ~ 1 + (1 | batch/cask)")
        let explicit = try fit("pastes.csv", "strength ~ 1 + (1 | batch) + (1 | cask:batch)")
        XCTAssertEqual(explicit.objective, nested.objective, accuracy: 1e-9)
        XCTAssertEqual(nested.terms[0].group, "cask:batch")
        XCTAssertEqual(nested.terms[0].levels.count, 30)
        XCTAssertEqual(nested.terms[0].levels.prefix(2), ["a:A", "a:B"])
    }

    func testRLevelNames() {
        XCTAssertEqual(rLevelName(1), "1")
        XCTAssertEqual(rLevelName(2.5), "2.5")
        XCTAssertEqual(rLevelName(100000), "1e+05")
        XCTAssertEqual(rLevelName(123456), "123456")
        // Whole numbers take a path without C's formatting: the same names.
        var state: UInt64 = 42
        var wholes: [Double] = (-3000...3000).map(Double.init)
        for e in 0...14 { for m in [1.0, 2, 5, 12, 120, 9999] { wholes.append(m * pow(10, Double(e))) } }
        for _ in 0..<2000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            wholes.append(Double(Int64(state >> 14) % 999_999_999_999_999) * (state & 1 == 0 ? 1 : -1))
        }
        for x in wholes where abs(x) < 1e15 { XCTAssertEqual(rLevelName(x), rFormattedName(x), "\(x)") }
        XCTAssertEqual(rLevelName(0.1), "0.1")
        XCTAssertEqual(rLevelName(-3), "-3")
    }
}
