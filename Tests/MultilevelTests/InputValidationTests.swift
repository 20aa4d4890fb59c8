import Foundation
import XCTest
@testable import Multilevel

/// Issue 10, "no silent wrong answers": values that cannot be represented, new factor levels in
/// prediction, and degenerate problems are refused with one line naming what is at fault.
final class InputValidationTests: ScratchDirectoryTestCase {
    /// sleepstudy.csv's lines (header first), for editing.
    private func sleepstudyLines() throws -> [String] {
        try String(contentsOfFile: Fixtures.path("sleepstudy.csv"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
    }

    /// sleepstudy.csv with the Days field of data row `row` (1-based; on line row + 1) replaced by `value`.
    private func sleepstudy(days value: String, row: Int, name: String) throws -> String {
        var lines = try sleepstudyLines()
        var fields = lines[row].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        fields[1] = value
        lines[row] = fields.joined(separator: ",")
        return try write(lines.joined(separator: "\n") + "\n", to: name)
    }

    private func fit(_ formula: String, _ path: String) throws -> FitResult {
        try LinearMixedModel.fit(formula, data: try openTable(path: path, table: nil), options: FitOptions(threads: 1))
    }

    // MARK: (4) values that cannot be represented

    /// `Inf` and `1e400` (strtod's infinity) in a numeric CSV column are errors naming the column
    /// and the line, not missing rows; `NaN`, `NA` and an empty field stay missing.
    func testInfiniteValuesInACSVAreErrorsWithTheLine() throws {
        for (k, value) in ["Inf", "-Inf", "1e400", "-1e999", "inf"].enumerated() {
            let path = try sleepstudy(days: value, row: 5, name: "inf\(k).csv")
            let m = message { try self.fit("Reaction ~ Days + (Days | Subject)", path) }
            XCTAssertTrue(m.hasPrefix("\(path) line 6: column 'Days' holds "), m)
            XCTAssertTrue(m.contains("Inf, not a finite number"), m)
        }
        for (k, value) in ["NaN", "NA", ""].enumerated() {
            let path = try sleepstudy(days: value, row: 5, name: "missing\(k).csv")
            let result = try fit("Reaction ~ Days + (Days | Subject)", path)
            XCTAssertEqual(result.nobs, 179)
            XCTAssertEqual(result.droppedRows, 1)
        }
    }

    /// A line number counts the lines of quoted fields that span lines.
    func testLineNumbersFollowMultilineRecords() throws {
        let path = try write("y,x,note,g\n1,2,\"two\nlines\",a\n2,Inf,b,b\n", to: "multi.csv")
        let source = try CSVSource(path: path)
        XCTAssertEqual(source.rowDescription(0), "line 2")
        XCTAssertEqual(source.rowDescription(1), "line 4")
        let m = message { try ModelFrame.scan(try Formula.parse("y ~ x + (1 | g)"), source: source) }
        XCTAssertEqual(m, "\(path) line 4: column 'x' holds Inf, not a finite number (missing values are NA, NaN or empty)")
    }

    /// A transform that is not finite where its inputs are present — log(0), sqrt(-1), an overflow
    /// — is an error naming the term, the inputs and the row; it is not a missing row.
    func testNonFiniteTransformsAreErrors() throws {
        let path = Fixtures.path("sleepstudy.csv")
        XCTAssertEqual(message { try self.fit("Reaction ~ log(Days) + (1 | Subject)", path) },
                       "\(path) line 2: log(Days) is -Inf (Days = 0), not a finite number")
        XCTAssertEqual(message { try self.fit("Reaction ~ sqrt(Days - 1) + (1 | Subject)", path) },
                       "\(path) line 2: sqrt(Days - 1) is NaN (Days = 0), not a finite number")
        XCTAssertEqual(message { try self.fit("log(Reaction - 250) ~ Days + (1 | Subject)", path) },
                       "\(path) line 2: log(Reaction - 250) is NaN (Reaction = 249.56), not a finite number")
        XCTAssertEqual(message { try self.fit("Reaction ~ I(exp(Days * 100)) + (1 | Subject)", path) },
                       "\(path) line 10: I(exp(Days * 100)) is Inf (Days = 8), not a finite number")
        // A transform of a missing value is missing, as before.
        let missing = try sleepstudy(days: "NA", row: 5, name: "na.csv")
        XCTAssertEqual(try fit("Reaction ~ log(Days + 1) + (1 | Subject)", missing).droppedRows, 1)
    }

    /// Values finite one by one whose squares overflow: the fixed-effect column is named.
    func testOverflowingCrossProductsAreErrors() throws {
        let path = Fixtures.path("sleepstudy.csv")
        XCTAssertEqual(message { try self.fit("Reaction ~ I(Days * 1e155) + (1 | Subject)", path) },
                       "fixed-effect column 'I(Days * 1e+155)' is too large for its sum of squares to be finite in double precision; rescale it")
        XCTAssertEqual(message { try self.fit("I(Reaction * 1e160) ~ Days + (1 | Subject)", path) },
                       "the response is too large for its sum of squares to be finite in double precision; rescale it")
    }

    /// HDF5 columns holding ±Inf: an error naming the column and the (1-based) row.
    func testInfiniteValuesInHDF5AreErrorsWithTheRow() throws {
        let path = temporary("inf.h5")
        let writer = try HDF5TableWriter(path: path, group: "data", columns: [.numeric("y"), .numeric("x"), .string("g")])
        var x = (0..<40).map { Double($0 % 7) }, y = (0..<40).map { Double($0 * $0 % 11) }
        x[12] = -.infinity
        y[3] = .nan
        try writer.append(numeric: ["y": y, "x": x], strings: ["g": (0..<40).map { "g\($0 % 5)" }])
        try writer.close()
        let m = message { try self.fit("y ~ x + (1 | g)", path) }
        XCTAssertEqual(m, "\(path):/data row 13: column 'x' holds -Inf, not a finite number (missing values are NA, NaN or empty)")
    }

    // MARK: (10) a number column with a stray string

    /// `abc` among the numbers of Days makes it a string column; as a random slope it is a factor
    /// with too many levels: the message names the column and the line of `abc`.
    func testStrayStringInANumericColumnIsNamed() throws {
        let path = try sleepstudy(days: "abc", row: 5, name: "abc.csv")
        XCTAssertEqual(message { try self.fit("Reaction ~ Days + (Days | Subject)", path) },
                       "\(path) line 6: column 'Days' holds 'abc', not a number, so 'Days' is read as strings and (… | Subject) has a factor of 11 levels (198 random effects for 180 observations)")
    }

    // MARK: (5) prediction with a level the fit never saw

    /// A fixed-effect factor level absent from the fit is an error naming the column, the level
    /// and the line (lme4: "factor sex has new level X"); new grouping levels still get 0.
    func testPredictionRefusesANewFactorLevel() throws {
        let fitted = temporary("fit.json")
        let fit = try mlm(["fit", Fixtures.path("exam.csv"), "--formula", "normexam ~ standLRT + sex + (1 | school)",
                           "--json", fitted])
        XCTAssertEqual(fit.status, 0, fit.stderr)
        var lines = try String(contentsOfFile: Fixtures.path("exam_newdata.csv"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        lines[3] = lines[3].replacingOccurrences(of: "\"F\"", with: "\"X\"").replacingOccurrences(of: "\"M\"", with: "\"X\"")
        let newdata = try write(lines.joined(separator: "\n") + "\n", to: "new.csv")
        let out = temporary("pred.csv")
        let run = try mlm(["predict", newdata, "--model", fitted, "--out", out])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, "mlm: error: \(newdata) line 4: sex has the level 'X', which the fitted model did not see (its levels: 'F', 'M')\n")
        // A numeric factor too.
        let data = try write("y,k,g\n1,1,a\n2,2,a\n3,1,b\n5,2,b\n4,1,c\n7,2,c\n6,1,a\n9,2,b\n", to: "k.csv")
        let model = try SavedModel(fit: try self.fit("y ~ factor(k) + (1 | g)", data))
        let newK = try CSVSource(path: try write("k,g\n1,a\n3,z\n", to: "k-new.csv"))
        XCTAssertTrue(message { try Prediction.predict(model, data: newK, population: false) { _, _ in } }
            .hasSuffix("k-new.csv line 3: factor(k) has the level '3', which the fitted model did not see (its levels: '1', '2')"))
        // A new grouping level alone is fine: it gets no random effect.
        let newG = try CSVSource(path: try write("k,g\n1,a\n2,z\n", to: "g-new.csv"))
        var predictions: [Double?] = []
        try Prediction.predict(model, data: newG, population: false) { p, _ in predictions += p }
        XCTAssertEqual(predictions.count, 2)
        XCTAssertTrue(predictions.allSatisfy { $0?.isFinite == true })
    }

    // MARK: (6) degenerate problems

    /// No random-effects term: lme4 stops ("No random effects terms specified in formula").
    func testAFormulaWithoutRandomEffectsIsRefused() throws {
        let path = Fixtures.path("sleepstudy.csv")
        for formula in ["Reaction ~ Days", "Reaction ~ 1", "Reaction ~ Days + Subject"] {
            XCTAssertEqual(message { try self.fit(formula, path) },
                           "no random-effects terms specified in the formula (a term such as (1 | g)): mlm fits mixed models")
        }
    }

    /// A constant response has nothing to model (before, σ ≈ 5e-6 and t ≈ 1.5e8).
    func testAConstantResponseIsRefused() throws {
        var lines = try sleepstudyLines()
        for i in 1..<lines.count { lines[i] = "5" + lines[i].drop(while: { $0 != "," }) }
        let path = try write(lines.joined(separator: "\n") + "\n", to: "constant.csv")
        XCTAssertEqual(message { try self.fit("Reaction ~ Days + (1 | Subject)", path) },
                       "the response 'Reaction' is constant (5 in every complete row): there is nothing to model")
    }

    /// A response that the fixed effects fit exactly has no residual variance (before: σ ≈ 4e-8,
    /// t ≈ 1e9 and a convergence note).
    func testAResponseFittedExactlyIsRefused() throws {
        let path = Fixtures.path("sleepstudy.csv")
        for formula in ["Days ~ I(Days * 2) + (1 | Subject)", "I(2 * Days + 1) ~ Days + (Days | Subject)",
                        "Reaction ~ Days + I(Reaction * 3) + (1 | Subject)"] {
            XCTAssertEqual(message { try self.fit(formula, path) },
                           "the response is a linear combination of the fixed effects (their least-squares residuals are 0 to rounding): there is no residual variance to estimate",
                           formula)
        }
    }

    /// A covariate offset by 1e9 loses its variation in the cross-products (lme4 drops it as
    /// aliased and reports an intercept-only model): refused, with the fix.
    func testAVariableLostInItsOffsetIsRefused() throws {
        var lines = try sleepstudyLines()
        lines[0] += ",x"
        for i in 1..<lines.count {
            let days = Double(lines[i].split(separator: ",")[1])!
            lines[i] += "," + String(days + 1e9)
        }
        let path = try write(lines.joined(separator: "\n") + "\n", to: "offset.csv")
        XCTAssertEqual(message { try self.fit("Reaction ~ x + (1 | Subject)", path) },
                       "'x' varies only from 1e+09 to 1000000009, a range too small for its magnitude to be resolved in double precision: centre it, e.g. I(x - 1e+09)")
        XCTAssertEqual(message { try self.fit("Reaction ~ I(Days + 1e9) + (1 | Subject)", path) },
                       "'I(Days + 1e+09)' varies only from 1e+09 to 1000000009, a range too small for its magnitude to be resolved in double precision: centre it (subtract about 1e+09)")
        XCTAssertTrue(message { try self.fit("I(Reaction + 1e9) ~ Days + (1 | Subject)", path) }
            .hasPrefix("the response 'I(Reaction + 1e+09)' varies only from 1000000194.3322 to 1000000466.3535"))
        XCTAssertTrue(message { try self.fit("Reaction ~ Days + (x | Subject)", path) }.hasPrefix("'x' varies only"))
        // Centred as the message says, the fit is sleepstudy's.
        let centred = try fit("Reaction ~ I(x - 1e9) + (1 | Subject)", path)
        let plain = try fit("Reaction ~ Days + (1 | Subject)", path)
        XCTAssertEqual(centred.beta[1], plain.beta[1], accuracy: 1e-9)
        XCTAssertEqual(centred.beta[0], plain.beta[0], accuracy: 1e-9)
    }
}
