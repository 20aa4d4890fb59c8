import Foundation
import XCTest

/// The command under `mpirun`: ranks share the reading, the replicates and the profile traces,
/// and rank 0 writes what one process would have written, bit for bit; a killed bootstrap
/// resumes from its checkpoint.
final class MPITests: ScratchDirectoryTestCase {
    let multimember = "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)"

    /// Runs `mpirun -np ranks mlm arguments` (as root if need be, more ranks than cores allowed).
    func mpirun(_ ranks: Int, _ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "-np", String(ranks), "--oversubscribe", Self.binary] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: e, as: UTF8.self), signalled: process.terminationReason == .uncaughtSignal)
    }

    /// A residual SD per group (its groups' cross-products reduced over the ranks; the bootstrap
    /// and profile on them) and varPower (the rows re-read on every rank per evaluation): 2 ranks
    /// write what one process writes, byte for byte.
    func testResidualVarianceFitsAreTheSameOnAnyNumberOfRanks() throws {
        let cases: [(String, [String])] = [
            ("ident", ["fit", Fixtures.path("orthodont.csv"), "--formula", "distance ~ age + (1 | Subject)", "--segment-rows", "2",
                       "--residual-variance", "~ 1 | Sex", "--bootstrap", "20", "--seed", "3", "--profile"]),
            ("power", ["fit", Fixtures.path("exam.csv"), "--formula", "normexam ~ standLRT + (1 | school)", "--segment-rows", "50",
                       "--residual-variance", "varPower(~ standLRT)"]),
        ]
        for (tag, arguments) in cases {
            let single = try mlm(arguments + ["--json", temporary("\(tag)-single.json")])
            XCTAssertEqual(single.status, 0, single.stderr)
            let run = try mpirun(2, arguments + ["--json", temporary("\(tag)-2.json")])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.stdout, single.stdout, tag)
            XCTAssertEqual(try String(contentsOfFile: temporary("\(tag)-2.json"), encoding: .utf8),
                           try String(contentsOfFile: temporary("\(tag)-single.json"), encoding: .utf8), tag)
        }
    }

    /// 4,000 rows in segments of 50 rows make five groups of 800, so 2 and 3 ranks each read
    /// their own rows (3 ranks: 800, 1,600 and 1,600). One process, and 1, 2 and 3 ranks, print
    /// the same summary and intervals and write byte-identical replicate tables, profile traces and JSON.
    func testAnyNumberOfRanksGivesTheSameTablesAndIntervals() throws {
        func arguments(_ tag: String) -> [String] {
            ["fit", Fixtures.path("multimember.h5"), "--formula", multimember, "--segment-rows", "50",
             "--bootstrap", "40", "--seed", "9", "--profile",
             "--bootstrap-table", temporary("boot-\(tag).csv"), "--profile-table", temporary("profile-\(tag).csv"),
             "--json", temporary("fit-\(tag).json")]
        }
        let single = try mlm(arguments("single"))
        XCTAssertEqual(single.status, 0, single.stderr)
        XCTAssertTrue(single.stdout.contains("Percentile bootstrap intervals"))
        XCTAssertTrue(single.stdout.contains("Profile-likelihood intervals"))
        let files = ["boot-%@.csv", "profile-%@.csv", "fit-%@.json"]
        let reference = try files.map { try String(contentsOfFile: temporary(String(format: $0, "single")), encoding: .utf8) }
        XCTAssertEqual(reference[0].split(separator: "\n").count, 41)
        for ranks in [1, 2, 3] {
            let run = try mpirun(ranks, arguments("\(ranks)"))
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.stdout, single.stdout, "\(ranks) ranks")
            for (k, file) in files.enumerated() {
                let text = try String(contentsOfFile: temporary(String(format: file, "\(ranks)")), encoding: .utf8)
                XCTAssertEqual(text, reference[k], "\(file), \(ranks) ranks")
            }
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: temporary("fit-3.json")))) as! [String: Any]
        let boot = json["bootstrap"] as! [String: Any], profile = json["profile"] as! [String: Any]
        XCTAssertEqual(boot["replicates"] as? Int, 40)
        XCTAssertEqual(boot["seed"] as? Int, 9)
        XCTAssertEqual(boot["level"] as? Double, 0.95)
        for intervals in [boot["intervals"], profile["intervals"]] {
            let list = intervals as! [[String: Any]]
            XCTAssertEqual(list.map { $0["parameter"] as! String }, ["sd", "sd", "sigma", "beta", "beta"])
            XCTAssertEqual(list[4]["name"] as? String, "x")
            XCTAssertTrue(list[0]["var2"] is NSNull)
            for i in list { XCTAssertLessThan(i["lower"] as! Double, i["upper"] as! Double) }
        }
    }

    /// The iterative solver splits its probes over the ranks (probe j on rank j mod R) and sums
    /// them in probe order, and its bootstrap replicates read every row on whichever rank refits
    /// them, and its profile traces each on one rank: 1, 2 and 3 ranks print and write what one
    /// process does.
    func testIterativeSolverGivesTheSameFitOnAnyNumberOfRanks() throws {
        func arguments(_ tag: String) -> [String] {
            ["fit", Fixtures.path("multimember.h5"), "--formula", multimember, "--segment-rows", "50", "--solver", "iterative",
             "--probes", "16", "--max-probes", "64", "--bootstrap", "6", "--seed", "5", "--profile",
             "--bootstrap-table", temporary("boot-\(tag).csv"), "--profile-table", temporary("profile-\(tag).csv"),
             "--json", temporary("fit-\(tag).json")]
        }
        let single = try mlm(arguments("single"))
        XCTAssertEqual(single.status, 0, single.stderr)
        XCTAssertTrue(single.stdout.contains("Monte-Carlo SE"), single.stdout)
        XCTAssertTrue(single.stdout.contains("Percentile bootstrap intervals"), single.stdout)
        XCTAssertTrue(single.stdout.contains("Profile-likelihood intervals"), single.stdout)
        let reference = try ["fit", "boot", "profile"].map { try String(contentsOfFile: temporary("\($0)-single.\($0 == "fit" ? "json" : "csv")"), encoding: .utf8) }
        XCTAssertEqual(reference[1].split(separator: "\n").count, 7)
        for ranks in [1, 2, 3] {
            let run = try mpirun(ranks, arguments("\(ranks)"))
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.stdout, single.stdout, "\(ranks) ranks")
            XCTAssertEqual(try String(contentsOfFile: temporary("fit-\(ranks).json"), encoding: .utf8), reference[0], "\(ranks) ranks")
            XCTAssertEqual(try String(contentsOfFile: temporary("boot-\(ranks).csv"), encoding: .utf8), reference[1], "\(ranks) ranks")
            XCTAssertEqual(try String(contentsOfFile: temporary("profile-\(ranks).csv"), encoding: .utf8), reference[2], "\(ranks) ranks")
        }
    }

    /// A bootstrap killed (SIGKILL) part-way and run again with the same `--checkpoint`
    /// computes only the missing replicates and writes the table of an uninterrupted run.
    /// (4000 replicates: the release build makes 2.5 a millisecond, so the kill has more than a
    /// second after the 100th.)
    func testKilledBootstrapResumesFromItsCheckpoint() throws {
        let data = Fixtures.path("sleepstudy.csv"), formula = "Reaction ~ Days + (Days | Subject)"
        let common = ["fit", data, "--formula", formula, "--bootstrap", "4000", "--seed", "4", "--threads", "2"]
        let whole = try mlm(common + ["--bootstrap-table", temporary("whole.csv")])
        XCTAssertEqual(whole.status, 0, whole.stderr)

        let checkpoint = temporary("run.checkpoint")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = common + ["--bootstrap-table", temporary("resumed.csv"), "--checkpoint", checkpoint]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        func recorded() -> Int {
            ((try? String(contentsOfFile: checkpoint, encoding: .utf8)) ?? "").split(separator: "\n").count - 1
        }
        let deadline = Date().addingTimeInterval(120)
        while recorded() < 100 && process.isRunning && Date() < deadline { usleep(5_000) }
        XCTAssertTrue(process.isRunning, "the bootstrap finished before it could be killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let done = recorded()
        XCTAssertGreaterThanOrEqual(done, 100)
        XCTAssertLessThan(done, 4000)

        let resumed = try mlm(common + ["--bootstrap-table", temporary("resumed.csv"), "--checkpoint", checkpoint])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        // Progress starts from the replicates already done (plain lines when not a terminal).
        let first = resumed.stderr.split(separator: "\n").first { $0.hasPrefix("bootstrap: ") }
        let resumedFrom = Int(first?.dropFirst("bootstrap: ".count).prefix { $0 != "/" } ?? "") ?? -1
        XCTAssertGreaterThanOrEqual(resumedFrom, done - 1, resumed.stderr)
        XCTAssertEqual(try String(contentsOfFile: temporary("resumed.csv"), encoding: .utf8),
                       try String(contentsOfFile: temporary("whole.csv"), encoding: .utf8))
        XCTAssertEqual(resumed.stdout, whole.stdout)

        // The same checkpoint with another model is refused, in one line.
        let other = try mlm(["fit", data, "--formula", "Reaction ~ Days + (1 | Subject)", "--bootstrap", "10",
                             "--checkpoint", checkpoint])
        XCTAssertEqual(other.status, 1)
        XCTAssertEqual(other.stderr, "mlm: error: the checkpoint '\(checkpoint)' was written for another model or data; delete it or give another --checkpoint file\n")
    }

    /// Bad input under mpirun: every rank stops, one error line, no hang.
    /// A sampling-weighted fit: the ranks' segments of each cluster are added on rank 0 in the
    /// order one process adds them, so 1, 2 and 3 ranks write byte-identical JSON; a level-2
    /// weight that varies within a school read by the last rank stops every rank with one line.
    func testSurveyFitIsTheSameOnAnyNumberOfRanks() throws {
        // 3,000 pupils in 150 schools of 20, in 10 strata; schools span segments of 40 rows.
        var lines = ["y,x,school,stratum,w_pupil,w_school,r1,r2,r3,r4"]
        for i in 0..<3000 {
            let school = i / 20, u = sin(Double(school) * 1.7), x = cos(Double(i) * 0.37)
            let y = 1 + 0.5 * x + 0.5 * u + sin(Double(i) * 2.3)
            let w1 = 1 + Double(i % 7) / 3, w2 = 2 + Double(school % 5)
            let replicates = (1...4).map { "\(w1 * w2 * ((school + $0) % 2 == 0 ? 1.5 : 0.5))" }.joined(separator: ",")
            lines.append("\(y),\(x),s\(school),\(school / 15),\(w1),\(w2),\(replicates)")
        }
        let data = try write(lines.joined(separator: "\n") + "\n", to: "survey.csv")
        func arguments(_ tag: String, file: String = data) -> [String] {
            ["fit", file, "--formula", "y ~ x + (1 | school)", "--survey-weights", "w_pupil, w_school", "--strata", "stratum",
             "--segment-rows", "40", "--json", temporary("survey-\(tag).json")]
        }
        // Linearised, then with replicate weights (the replicates spread over the ranks).
        for (tag, extra) in [("linearised", [String]()), ("replicates", ["--replicate-weights", "r1..r4", "--replicate-method", "fay"])] {
            let single = try mlm(arguments("single-\(tag)") + extra)
            XCTAssertEqual(single.status, 0, single.stderr)
            let expected = try Data(contentsOf: URL(fileURLWithPath: temporary("survey-single-\(tag).json")))
            for ranks in [1, 2, 3] {
                let run = try mpirun(ranks, arguments("\(ranks)-\(tag)") + extra)
                XCTAssertEqual(run.status, 0, run.stderr)
                XCTAssertEqual(run.stdout, single.stdout, "\(ranks) ranks, \(tag)")
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: temporary("survey-\(ranks)-\(tag).json"))), expected, "\(ranks) ranks, \(tag)")
            }
        }
        // The last school's level-2 weight changed in its last row (read by rank 2 of 3).
        var fields = lines[lines.count - 1].split(separator: ",").map(String.init)
        fields[5] = "12345"
        lines[lines.count - 1] = fields.joined(separator: ",")
        let bad = try write(lines.joined(separator: "\n") + "\n", to: "survey-bad.csv")
        let run = try mpirun(3, arguments("bad", file: bad))
        XCTAssertNotEqual(run.status, 0)
        let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("mlm: error:") }
        XCTAssertEqual(errors.count, 1, run.stderr)
        XCTAssertTrue(errors.first?.contains("the level-2 weight in column 'w_school' varies within school 's149'") ?? false, run.stderr)
    }

    /// A GLMM's rows are split over the ranks; the fit and its bootstrap replicates are bit for bit the one process's (one
    /// 0/1 row per animal of cbpp, in segments of 20 rows: groups of 320 on each rank), in memory or read again from the
    /// file at every pass, and a response of 2 in the last rank's slab stops every rank with one line naming its line.
    func testGeneralizedFitIsTheSameOnAnyNumberOfRanks() throws {
        func arguments(_ tag: String, file: String = Fixtures.path("cbpp_binary.csv")) -> [String] {
            ["fit", file, "--formula", "y ~ period + (1 | herd)", "--family", "binomial", "--bootstrap", "3", "--seed", "2",
             "--segment-rows", "20", "--json", temporary("glmm-\(tag).json")]
        }
        let single = try mlm(arguments("single"))
        XCTAssertEqual(single.status, 0, single.stderr)
        let expected = try Data(contentsOf: URL(fileURLWithPath: temporary("glmm-single.json")))
        for ranks in [1, 2, 3] {
            let run = try mpirun(ranks, arguments("\(ranks)"))
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.stdout, single.stdout, "\(ranks) ranks")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: temporary("glmm-\(ranks).json"))), expected, "\(ranks) ranks")
            // The rows read again from the file at every pass (--max-memory 40k: more than half of it).
            let streamed = try mpirun(ranks, arguments("streamed-\(ranks)") + ["--max-memory", "40k", "--verbose"])
            XCTAssertEqual(streamed.status, 0, streamed.stderr)
            XCTAssertTrue(streamed.stderr.contains("model rows: read again from the file at every pass"), streamed.stderr)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: temporary("glmm-streamed-\(ranks).json"))), expected,
                           "\(ranks) ranks, streamed")
        }
        var lines = try String(contentsOfFile: Fixtures.path("cbpp_binary.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        var fields = lines[lines.count - 1].split(separator: ",").map(String.init)
        fields[2] = "2"
        lines[lines.count - 1] = fields.joined(separator: ",")
        let bad = try write(lines.joined(separator: "\n") + "\n", to: "binary-bad.csv")
        let run = try mpirun(3, arguments("bad", file: bad))
        XCTAssertNotEqual(run.status, 0)
        let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("mlm: error:") }
        XCTAssertEqual(errors.count, 1, run.stderr)
        XCTAssertTrue(errors.first?.contains("line \(lines.count): the response 'y' is 2") ?? false, run.stderr)
    }

    func testErrorsUnderMPIStopEveryRankWithOneLine() throws {
        let run = try mpirun(2, ["fit", Fixtures.path("sleepstudy.h5"), "--formula", "Reaction ~ Nights + (1 | Subject)",
                                 "--bootstrap", "10"])
        XCTAssertNotEqual(run.status, 0)
        let lines = run.stderr.split(separator: "\n").filter { $0.hasPrefix("mlm: error:") }
        XCTAssertEqual(lines.count, 1, run.stderr)
        XCTAssertTrue(lines.first?.contains("Nights") ?? false, run.stderr)
    }
}
