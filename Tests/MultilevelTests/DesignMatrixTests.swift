import XCTest
@testable import Multilevel

/// Treatment-contrast coding (R's `model.matrix` rules) and evaluation on a chunk of rows.
/// Expected names and values are R's `model.matrix` on the same data.
final class DesignMatrixTests: XCTestCase {
    /// A four-row chunk: numeric x; categorical f (A, B), g (X, Y), sex (F, M).
    private let numericData: [String: [Double]] = ["x": [1, 2, 3, 4]]
    private let categoricalData: [String: [String]] = [
        "f": ["A", "B", "A", "B"], "g": ["X", "X", "Y", "Y"], "sex": ["F", "M", "M", "F"],
    ]
    private let levels: [String: [String]] = ["f": ["A", "B"], "g": ["X", "Y"], "sex": ["F", "M"]]

    /// The design of a formula's fixed part, a column being categorical iff it is in `levels`.
    private func design(_ rhs: String, levels: [String: [String]]? = nil) throws -> Design {
        let levels = levels ?? self.levels
        return try Design(Formula.parse("y " + rhs).fixed) { variable in
            switch variable {
            case .column(let name): return levels[name].map { .categorical(levels: $0) } ?? .numeric
            case .factor(let name): return .categorical(levels: levels[name]!)
            case .transform: return .numeric
            }
        }
    }

    /// The evaluated chunk as rows.
    private func rows(_ design: Design) -> [[Double]] {
        var numeric: [[Double]] = [], codes: [[Int32]] = []
        for (variable, coding) in zip(design.variables, design.codings) {
            switch (variable, coding) {
            case (.transform(_, let expression), _):
                numeric.append(expression.evaluate(numericData, count: 4)); codes.append([])
            case (_, .numeric):
                numeric.append(numericData[variable.columns[0]]!); codes.append([])
            case (_, .categorical(let levels)):
                numeric.append([])
                codes.append(categoricalData[variable.columns[0]]!.map { Int32(levels.firstIndex(of: $0)!) })
            }
        }
        var out: [Double] = []
        design.evaluate(numeric: numeric, codes: codes, count: 4, into: &out)
        let width = design.columns.count
        XCTAssertEqual(out.count, 4 * width)
        return (0..<4).map { Array(out[($0 * width)..<(($0 + 1) * width)]) }
    }

    func testContrastsDropTheBaseline() throws {
        let d = try design("~ sex")
        XCTAssertEqual(d.columns.map(\.name), ["(Intercept)", "sexM"])
        XCTAssertEqual(rows(d), [[1, 0], [1, 1], [1, 1], [1, 0]])
        XCTAssertEqual(d.columns[1], DesignColumn(name: "sexM", numeric: [], indicators: [.init(variable: 0, level: 1)]))
    }

    func testNoInterceptCodesTheFirstFactorByAllLevels() throws {
        let d = try design("~ 0 + sex")
        XCTAssertEqual(d.columns.map(\.name), ["sexF", "sexM"])
        XCTAssertEqual(rows(d), [[1, 0], [0, 1], [0, 1], [1, 0]])
        let two = try design("~ 0 + f + g")
        XCTAssertEqual(two.columns.map(\.name), ["fA", "fB", "gY"])
        XCTAssertEqual(rows(two), [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1]])
        let slope = try design("~ 0 + x + x:f")
        XCTAssertEqual(slope.columns.map(\.name), ["x", "x:fA", "x:fB"])
        XCTAssertEqual(rows(slope), [[1, 1, 0], [2, 0, 2], [3, 3, 0], [4, 0, 4]])
    }

    func testInteractionWithoutMainEffectUsesAllLevels() throws {
        let d = try design("~ x:f")
        XCTAssertEqual(d.columns.map(\.name), ["(Intercept)", "x:fA", "x:fB"])
        XCTAssertEqual(rows(d), [[1, 1, 0], [1, 0, 2], [1, 3, 0], [1, 0, 4]])
        XCTAssertEqual(d.columns[2].numeric, [0])
        XCTAssertEqual(d.columns[2].indicators, [.init(variable: 1, level: 1)])
    }

    func testCrossedFactors() throws {
        let d = try design("~ f*g")
        XCTAssertEqual(d.columns.map(\.name), ["(Intercept)", "fB", "gY", "fB:gY"])
        XCTAssertEqual(rows(d), [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]])
    }

    func testInteractionOnlyWithoutIntercept() throws {
        let d = try design("~ 0 + f:g")
        XCTAssertEqual(d.columns.map(\.name), ["fA:gX", "fB:gX", "fA:gY", "fB:gY"])
        XCTAssertEqual(rows(d), [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        let withIntercept = try design("~ f:g")
        XCTAssertEqual(withIntercept.columns.map(\.name), ["(Intercept)", "fA:gX", "fB:gX", "fA:gY", "fB:gY"])
    }

    func testNestedInteractionContrastsPerRRule() throws {
        // f:g with only f as a main effect: f by all levels, g by contrasts.
        let d = try design("~ f + f:g")
        XCTAssertEqual(d.columns.map(\.name), ["(Intercept)", "fB", "fA:gY", "fB:gY"])
        XCTAssertEqual(rows(d), [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]])
        let reversed = try design("~ g:f + f")
        XCTAssertEqual(reversed.columns.map(\.name), ["(Intercept)", "fB", "gY:fA", "gY:fB"])
    }

    func testServiceByDepartmentVariesFirstFactorFastest() throws {
        let levels = ["service": ["0", "1"], "dept": ["1", "10", "2"]]
        let d = try design("~ 1 + service*dept", levels: levels)
        XCTAssertEqual(d.columns.map(\.name),
                       ["(Intercept)", "service1", "dept10", "dept2", "service1:dept10", "service1:dept2"])
        XCTAssertEqual(d.columns[4].indicators, [.init(variable: 0, level: 1), .init(variable: 1, level: 1)])
        XCTAssertEqual(d.columns[5].indicators, [.init(variable: 0, level: 1), .init(variable: 1, level: 2)])
    }

    func testExamFixedEffects() throws {
        let levels = ["sex": ["F", "M"], "schgend": ["boys", "girls", "mixed"]]
        let d = try design("~ standLRT*schavg + sex + schgend", levels: levels)
        XCTAssertEqual(d.columns.map(\.name), ["(Intercept)", "standLRT", "schavg", "sexM", "schgendgirls",
                                               "schgendmixed", "standLRT:schavg"])
        XCTAssertEqual(d.variables, [.column("standLRT"), .column("schavg"), .column("sex"), .column("schgend")])
        XCTAssertEqual(d.columns[6].numeric, [0, 1])
        let numeric: [[Double]] = [[0.5, -1], [2, 3], [], []]
        let codes: [[Int32]] = [[], [], [0, 1], [2, 1]]
        var out: [Double] = [99]
        d.evaluate(numeric: numeric, codes: codes, count: 2, into: &out)
        XCTAssertEqual(out, [1, 0.5, 2, 0, 0, 1, 1,
                             1, -1, 3, 1, 1, 0, -3])
    }

    func testTransformsAndFactorCalls() throws {
        let d = try design("~ x*f + I(x^2) + factor(g)")
        XCTAssertEqual(d.columns.map(\.name), ["(Intercept)", "x", "fB", "I(x^2)", "factor(g)Y", "x:fB"])
        XCTAssertEqual(rows(d), [[1, 1, 0, 1, 0, 0], [1, 2, 1, 4, 0, 2], [1, 3, 0, 9, 1, 0], [1, 4, 1, 16, 1, 4]])
    }

    func testMissingValuesGiveNaN() throws {
        let d = try design("~ x + f")
        var out: [Double] = []
        d.evaluate(numeric: [[.nan, 2], []], codes: [[], [1, -1]], count: 2, into: &out)
        XCTAssertEqual(out[0], 1)
        XCTAssertTrue(out[1].isNaN)
        XCTAssertEqual(out[2], 1)
        XCTAssertEqual(Array(out[3...4]), [1, 2])
        XCTAssertTrue(out[5].isNaN)
    }

    func testCodingIsAskedOncePerVariable() throws {
        var asked: [String] = []
        let terms = try Formula.parse("y ~ f*x + f:g").fixed
        _ = Design(terms) { variable in
            asked.append(variable.name)
            return variable.name == "x" ? .numeric : .categorical(levels: ["a", "b"])
        }
        XCTAssertEqual(asked, ["f", "x", "g"])
    }
}
