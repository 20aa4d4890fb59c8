import Foundation
import XCTest

/// End-to-end: the real `mlm` binary, its output files, and its answers to bad input.
final class CommandLineTests: ScratchDirectoryTestCase {
    func testFitPrintsSummaryAndWritesJSON() throws {
        let json = temporary("sleep.json"), ranef = temporary("sleep-ranef.csv")
        let run = try mlm(["fit", Fixtures.path("sleepstudy.h5"), "--formula", "Reaction ~ Days + (Days | Subject)",
                           "--json", json, "--ranef", ranef])
        XCTAssertEqual(run.status, 0, run.stderr)
        for expected in ["Linear mixed model fit by REML", "REML criterion at convergence: 1743.6", "Random effects:",
                         "Subject", "Residual", "Number of obs: 180, groups:  Subject, 18", "Fixed effects:",
                         "(Intercept)", "Correlation of Fixed Effects:"] {
            XCTAssertTrue(run.stdout.contains(expected), "summary lacks '\(expected)':\n\(run.stdout)")
        }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
        for key in ["nobs", "REML", "theta", "theta_names", "beta", "se", "sigma", "logLik", "deviance", "REMLcrit",
                    "AIC", "BIC", "df", "ngroups", "varcorr"] {
            XCTAssertNotNil(object[key], "JSON lacks \(key)")
        }
        XCTAssertEqual(object["REML"] as? Bool, true)
        XCTAssertEqual(object["nobs"] as? Int, 180)
        XCTAssertEqual(object["REMLcrit"] as! Double, 1743.62827195995, accuracy: 1e-4)
        XCTAssertEqual((object["beta"] as! [String: Double])["Days"]!, 10.467285959596, accuracy: 1e-4)
        XCTAssertEqual(object["theta_names"] as! [String], ["Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"])
        let vc = object["varcorr"] as! [[String: Any]]
        XCTAssertEqual(vc.map { $0["grp"] as! String }, ["Subject", "Subject", "Subject", "Residual"])
        XCTAssertTrue(vc[3]["var1"] is NSNull)
        // Conditional modes: 18 subjects × 2 effects; lme4's ranef(m)$Subject["308", ] = (2.25855095, 9.198975766).
        let lines = try String(contentsOfFile: ranef, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "grpvar,term,grp,condval,condsd")
        XCTAssertEqual(lines.count, 1 + 36)
        let first = lines[1].split(separator: ",")
        XCTAssertEqual(first[0...2].joined(separator: ","), "\"Subject\",\"(Intercept)\",\"308\"")
        XCTAssertEqual(Double(first[3])!, 2.25855095, accuracy: 2e-3)
        let second = lines[2].split(separator: ",")
        XCTAssertEqual(second[1], "\"Days\"")
        XCTAssertEqual(Double(second[3])!, 9.198975766, accuracy: 2e-3)
    }

    func testMaximumLikelihoodSummaryShowsInformationCriteria() throws {
        let run = try mlm(["fit", Fixtures.path("dyestuff.csv"), "--formula", "Yield ~ 1 + (1 | Batch)", "--ml"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("fit by maximum likelihood"))
        XCTAssertTrue(run.stdout.contains("AIC"))
        XCTAssertTrue(run.stdout.contains("333.3"))          // lme4: AIC 333.3271
        XCTAssertTrue(run.stdout.contains("Intra-class correlation"))
    }

    func testRanefSubcommandWritesConditionalModes() throws {
        let out = temporary("pastes-ranef.csv")
        let run = try mlm(["ranef", Fixtures.path("pastes.csv"), "--formula", "strength ~ 1 + (1 | batch/cask)", "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1 + 30 + 10)
        XCTAssertTrue(lines[1].hasPrefix("\"cask:batch\",\"(Intercept)\",\"a:A\""), String(lines[1]))
    }

    /// `--verbose`: one line per deviance evaluation, numbered from 1, then the stage times; `--threads` does not change the answer.
    func testVerboseTracesEachEvaluation() throws {
        let arguments = ["fit", Fixtures.path("dyestuff.csv"), "--formula", "Yield ~ 1 + (1 | Batch)", "--ml"]
        for optimizer in ["newton", "bobyqa"] {
            let run = try mlm(arguments + ["--verbose", "--threads", "1", "--optimizer", optimizer])
            XCTAssertEqual(run.status, 0, run.stderr)
            let trace = run.stderr.split(separator: "\n").filter { $0.contains("deviance ") && $0.contains("theta") }
            for (i, line) in trace.enumerated() {
                XCTAssertEqual(line.split(separator: " ").first.map(String.init), String(i + 1), String(line))
            }
            XCTAssertTrue(run.stderr.contains("optimisation: "))
            // The report's counts are the trace's: "optimizer: …, I iterations, E deviance evaluations, G gradients".
            let report = try XCTUnwrap(run.stderr.split(separator: "\n").first { $0.hasPrefix("optimizer: ") }, run.stderr)
            let words = report.split(separator: " ")
            let count = { (label: String) in Int(words[words.firstIndex { $0.hasPrefix(label) }! - 1])! }
            XCTAssertEqual(count("deviance"), trace.count, String(report))
            if optimizer == "newton" {
                XCTAssertGreaterThan(count("iterations"), 1, String(report))
                XCTAssertGreaterThanOrEqual(count("gradients"), count("iterations"), String(report))
            } else {
                XCTAssertGreaterThan(trace.count, 5)
                XCTAssertEqual(count("gradients"), 0)
            }
        }
        XCTAssertEqual(try mlm(arguments + ["--threads", "3"]).stdout, try mlm(arguments).stdout)
    }

    // MARK: bad input

    func testNonPositiveThreads() throws {
        try assertFails(["fit", Fixtures.path("dyestuff.csv"), "--formula", "Yield ~ 1 + (1 | Batch)", "--threads", "0"],
                        mentioning: "--threads must be a positive number")
    }

    func testMissingFile() throws {
        try assertFails(["fit", "/nonexistent/data.csv", "--formula", "y ~ 1 + (1 | g)"], mentioning: "/nonexistent/data.csv")
    }

    func testUnknownColumn() throws {
        try assertFails(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Dayz + (1 | Subject)"], mentioning: "Dayz")
    }

    func testNonNumericResponse() throws {
        try assertFails(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Subject ~ Days + (1 | Subject)"],
                        mentioning: "Subject")
    }

    func testGroupingFactorWithOneLevel() throws {
        let path = try write("y,x,g\n1,1,\"a\"\n2,2,\"a\"\n3,1,\"a\"\n4,5,\"a\"\n", to: "one-level.csv")
        try assertFails(["fit", path, "--formula", "y ~ x + (1 | g)"], mentioning: "'g'")
    }

    func testFormulaSyntaxErrorSaysWhere() throws {
        try assertFails(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject"],
                        mentioning: "position")
    }

    func testMultipleMembershipListsOfDifferentLengths() throws {
        try assertFails(["fit", Fixtures.path("multimember.csv"), "--formula",
                         "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2)))"], mentioning: "mm(")
    }

    func testAllRowsMissing() throws {
        let path = try write("y,x,g\nNA,1,\"a\"\n2,NA,\"b\"\n3,1,NA\n", to: "all-missing.csv")
        try assertFails(["fit", path, "--formula", "y ~ x + (1 | g)"], mentioning: "no complete rows")
    }

    func testCorruptHDF5() throws {
        let path = temporary("corrupt.h5")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("dyestuff.h5")))
        bytes.replaceSubrange(0..<min(4096, bytes.count), with: Data(repeating: 0x5a, count: min(4096, bytes.count)))
        try bytes.write(to: URL(fileURLWithPath: path))
        try assertFails(["fit", path, "--formula", "Yield ~ 1 + (1 | Batch)"], mentioning: path)
        let text = try write("this is not HDF5\n", to: "text.h5")
        try assertFails(["fit", text, "--formula", "Yield ~ 1 + (1 | Batch)"], mentioning: text)
    }

    /// An output that could not be written fails before the fit, not after an hour of bootstrap.
    func testUnwritableOutputFailsBeforeFitting() throws {
        let run = try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)",
                           "--bootstrap", "50", "--bootstrap-table", "/nonexistent-folder/boot.csv"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, "mlm: error: --bootstrap-table '/nonexistent-folder/boot.csv': the folder '/nonexistent-folder' does not exist or is not writable\n")
        XCTAssertEqual(run.stdout, "")
    }
}
