import Foundation
import XCTest

/// Issue 10: a command line that does not parse or fails its checks prints exactly one line,
/// `mlm: error: …`, and exits with status 2 (README, "Exit status"); the full usage is printed
/// only on `--help`, on stdout, with status 0. Bad input found later keeps status 1.
final class UsageErrorTests: ScratchDirectoryTestCase {
    let data = Fixtures.path("sleepstudy.csv")
    let formula = "Reaction ~ Days + (Days | Subject)"

    func assertUsageError(_ arguments: [String], mentioning expected: String,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try mlm(arguments)
        XCTAssertEqual(run.status, 2, run.stderr, file: file, line: line)
        XCTAssertEqual(run.stdout, "", file: file, line: line)
        XCTAssertEqual(run.stderr.split(separator: "\n", omittingEmptySubsequences: false).count, 2,
                       "expected one line, got: \(run.stderr)", file: file, line: line)
        XCTAssertTrue(run.stderr.hasPrefix("mlm: error: "), run.stderr, file: file, line: line)
        XCTAssertTrue(run.stderr.contains(expected), "'\(run.stderr)' should mention '\(expected)'", file: file, line: line)
    }

    func testBadOptionValuesAreOneLineWithStatus2() throws {
        try assertUsageError(["fit", data, "--formula", formula, "--level", "2"], mentioning: "--level must be between 0 and 1")
        try assertUsageError(["fit", data, "--formula", formula, "--boot-ci", "foo"], mentioning: "--boot-ci must be perc, basic or norm")
        try assertUsageError(["fit", data, "--formula", formula, "--bootstrap", "0"], mentioning: "--bootstrap needs at least 2")
        try assertUsageError(["fit", data, "--formula", formula, "--bootstrap", "many"], mentioning: "--bootstrap")
        try assertUsageError(["fit", data, "--formula", formula, "--bootstrap", "5", "--bootstrap-table", temporary("b.txt")],
                             mentioning: ".csv or .h5")
        try assertUsageError(["fit", data, "--formula", formula, "--checkpoint", temporary("c")], mentioning: "--checkpoint needs")
    }

    func testMissingAndUnknownArgumentsAreOneLineWithStatus2() throws {
        try assertUsageError(["fit", data], mentioning: "--formula")
        try assertUsageError(["fit", "--formula", formula], mentioning: "<file>")
        try assertUsageError(["fit", data, "--formula", formula, "--bogus"], mentioning: "--bogus")
        try assertUsageError(["fit", data, "--formula", formula, "extra"], mentioning: "extra")
        try assertUsageError(["compare", data, "--formula", formula], mentioning: "at least two --formula")
        try assertUsageError(["simulate", "--out", temporary("s.h5")], mentioning: "--rows")
        try assertUsageError(["predict", data], mentioning: "--model")
        try assertUsageError(["frobnicate"], mentioning: "frobnicate")
    }

    /// The line points to the subcommand's help.
    func testUsageErrorPointsToTheHelp() throws {
        let run = try mlm(["fit", data, "--formula", formula, "--level", "2"])
        XCTAssertEqual(run.stderr, "mlm: error: --level must be between 0 and 1, e.g. 0.95. See 'mlm fit --help'.\n")
    }

    func testHelpIsTheFullUsageOnStdoutWithStatus0() throws {
        for arguments in [["--help"], ["fit", "--help"], ["help", "fit"], ["fit", "-h"]] {
            let run = try mlm(arguments)
            XCTAssertEqual(run.status, 0, "\(arguments): \(run.stderr)")
            XCTAssertEqual(run.stderr, "", "\(arguments)")
            XCTAssertTrue(run.stdout.contains("USAGE:"), "\(arguments): \(run.stdout)")
        }
        XCTAssertTrue(try mlm(["fit", "--help"]).stdout.contains("--bootstrap"))
    }

    /// Bad input found after parsing keeps status 1 (CommandLineTests checks many more).
    func testBadInputKeepsStatus1() throws {
        let run = try mlm(["fit", temporary("absent.csv"), "--formula", formula])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.hasPrefix("mlm: error: "))
    }
}
