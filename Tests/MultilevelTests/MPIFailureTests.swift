import Foundation
import XCTest

/// Issue 10: under `mpirun`, an error on any rank at any stage — the command line, the
/// outputs' check, reading, the fit, the bootstrap (a refused checkpoint, one that cannot be
/// written part-way), writing the outputs — ends every rank within seconds, with one
/// `mlm: error:` line and a non-zero status. A run that hangs is killed after a minute and fails.
final class MPIFailureTests: ScratchDirectoryTestCase {
    let sleepstudy = Fixtures.path("sleepstudy.csv")
    let formula = "Reaction ~ Days + (Days | Subject)"

    struct Outcome {
        let status: Int32
        let stderr: String
        let seconds: Double
        let hung: Bool
        var errorLines: [Substring] { stderr.split(separator: "\n").filter { $0.hasPrefix("mlm: error:") } }
    }

    /// Runs `mpirun -np 2 mlm arguments` with stdout discarded and stderr in a file; `during`,
    /// if given, is called once with rank 0's process id when `ready(stderr so far)` first holds. A run still
    /// going after `limit` seconds is killed (mpirun, then any rank left) and reported as hung.
    func mpirun(_ arguments: [String], limit: Double = 60, ready: ((String) -> Bool)? = nil,
                during: ((pid_t) -> Void)? = nil) throws -> Outcome {
        let errors = temporary("mpirun-\(UUID().uuidString).stderr")
        FileManager.default.createFile(atPath: errors, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "-np", "2", "--oversubscribe", Self.binary] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: errors)!
        let start = Date()
        try process.run()
        var called = during == nil
        while process.isRunning && Date().timeIntervalSince(start) < limit {
            if !called, ready?((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "") ?? true, let pid = rankZero() {
                during?(pid)
                called = true
            }
            usleep(20_000)
        }
        let hung = process.isRunning
        if hung {
            process.terminate()                       // mpirun forwards SIGTERM to the ranks
            let grace = Date()
            while process.isRunning && Date().timeIntervalSince(grace) < 5 { usleep(50_000) }
            for pid in ranks() { kill(pid, SIGKILL) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stderr: (try? String(contentsOfFile: errors, encoding: .utf8)) ?? "",
                       seconds: Date().timeIntervalSince(start), hung: hung)
    }

    /// The processes of this test's ranks: `mlm` with this test's scratch folder in its arguments.
    func ranks() -> [pid_t] {
        let marker = directory.path
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = pid_t(entry),
                  let command = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let words = String(decoding: command, as: UTF8.self).split(separator: "\0")
            guard words.first.map({ $0.hasSuffix("/mlm") }) == true, words.contains(where: { $0.contains(marker) }) else { return nil }
            return pid
        }
    }

    /// Rank 0 among `ranks()`.
    func rankZero() -> pid_t? {
        ranks().first { pid in
            let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data()
            return String(decoding: environment, as: UTF8.self).split(separator: "\0").contains("OMPI_COMM_WORLD_RANK=0")
        }
    }

    /// Sets the largest file process `pid` may write (`ulimit -f`, a quota reached): its next
    /// write beyond fails with EFBIG.
    func limitFileSize(of pid: pid_t, to bytes: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["prlimit", "--pid", String(pid), "--fsize=\(bytes)"]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "prlimit failed")
    }

    /// Ended by itself, quickly, non-zero, with exactly one error line that mentions `expected`.
    func assertStops(_ outcome: Outcome, mentioning expected: String, status: Int32? = nil,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(outcome.hung, "mpirun still running after \(Int(outcome.seconds)) s: \(outcome.stderr)", file: file, line: line)
        XCTAssertLessThan(outcome.seconds, 30, outcome.stderr, file: file, line: line)
        if let status { XCTAssertEqual(outcome.status, status, outcome.stderr, file: file, line: line) }
        XCTAssertNotEqual(outcome.status, 0, outcome.stderr, file: file, line: line)
        XCTAssertEqual(outcome.errorLines.count, 1, outcome.stderr, file: file, line: line)
        XCTAssertTrue(outcome.errorLines.first?.contains(expected) ?? false, "should mention '\(expected)': \(outcome.stderr)",
                      file: file, line: line)
        XCTAssertFalse(outcome.stderr.contains("MPI_ABORT"), outcome.stderr, file: file, line: line)
    }

    // MARK: Stages

    /// The defect: a checkpoint refused by rank 0 (written for another model, not a checkpoint
    /// at all, a folder) printed its line and left both ranks spinning.
    func testRefusedCheckpointStopsEveryRank() throws {
        let other = temporary("other.checkpoint")
        let made = try mlm(["fit", sleepstudy, "--formula", "Reaction ~ Days + (1 | Subject)", "--bootstrap", "2", "--checkpoint", other])
        XCTAssertEqual(made.status, 0, made.stderr)
        let binary = temporary("binary.checkpoint")
        try Data([0xff, 0xfe, 0x00, 0x80, 0x0a]).write(to: URL(fileURLWithPath: binary))
        let folder = temporary("folder.checkpoint")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (checkpoint, expected) in [(other, "written for another model"), (binary, "not an mlm checkpoint"), (folder, folder)] {
            let outcome = try mpirun(["fit", sleepstudy, "--formula", formula, "--bootstrap", "20", "--profile",
                                      "--checkpoint", checkpoint])
            assertStops(outcome, mentioning: expected, status: 1)
            XCTAssertTrue(outcome.errorLines.first?.contains(checkpoint) ?? false, outcome.stderr)
        }
    }

    /// A checkpoint that cannot be written part-way (the file-size limit is reached after a few
    /// replicates) stops rank 0's bootstrap, the other rank's, and the profile that would follow.
    func testCheckpointFailingPartWayStopsEveryRank() throws {
        let checkpoint = temporary("partway.checkpoint")
        func recorded() -> Int {
            ((try? String(contentsOfFile: checkpoint, encoding: .utf8)) ?? "").split(separator: "\n").count - 1
        }
        let outcome = try mpirun(["fit", sleepstudy, "--formula", formula, "--bootstrap", "100000", "--threads", "1",
                                  "--profile", "--checkpoint", checkpoint],
                                 ready: { _ in recorded() >= 3 },
                                 during: { pid in
                                     var info = stat()
                                     stat(checkpoint, &info)
                                     try? self.limitFileSize(of: pid, to: Int(info.st_size) + 10)
                                 })
        assertStops(outcome, mentioning: "cannot write the checkpoint '\(checkpoint)': File too large", status: 1)
    }

    /// An output that rank 0 cannot write at the end (the limit is reached while the other rank
    /// waits) ends both ranks with rank 0's line.
    func testOutputFailingOnRankZeroStopsEveryRank() throws {
        let json = temporary("fit.json")
        let outcome = try mpirun(["fit", sleepstudy, "--formula", formula, "--bootstrap", "3000", "--threads", "1", "--json", json],
                                 ready: { $0.contains("bootstrap: ") },
                                 during: { pid in try? self.limitFileSize(of: pid, to: 64) })
        assertStops(outcome, mentioning: "cannot write '\(json)': File too large", status: 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: json))
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".mlm-") }
        XCTAssertEqual(left, [], "temporary files left behind")
    }

    /// Errors every rank meets: the command line, an output refused before the fit, the data, the model.
    func testErrorsAtEachStageStopEveryRankWithOneLine() throws {
        // The command line: status 2, one line.
        assertStops(try mpirun(["fit", sleepstudy, "--formula", formula, "--level", "2"]), mentioning: "--level", status: 2)
        assertStops(try mpirun(["fit", sleepstudy, "--formula", formula, "--bogus", directory.path]), mentioning: "--bogus", status: 2)
        // The outputs, checked by rank 0 before the fit.
        assertStops(try mpirun(["fit", sleepstudy, "--formula", formula, "--json", directory.path]),
                    mentioning: "--json '\(directory.path)'", status: 1)
        // Reading.
        let missing = temporary("missing.csv")
        assertStops(try mpirun(["fit", missing, "--formula", formula]), mentioning: missing, status: 1)
        let text = temporary("text.h5")
        try "not HDF5\n".write(toFile: text, atomically: true, encoding: .utf8)
        assertStops(try mpirun(["fit", text, "--formula", formula]), mentioning: text, status: 1)
        // The model: as many levels as rows.
        var csv = "y,x,g\n"
        for i in 0..<30 { csv += "\(Double(i % 7) + 0.5),\(i % 5),\"g\(i)\"\n" }
        let unique = temporary("unique.csv")
        try csv.write(toFile: unique, atomically: true, encoding: .utf8)
        assertStops(try mpirun(["fit", unique, "--formula", "y ~ x + (1 | g)", "--bootstrap", "10"]),
                    mentioning: "fewer levels than observations", status: 1)
        // compare: models fitted to different rows.
        var gaps = "y,x,w,g\n"
        for i in 0..<60 { gaps += "\(Double(i % 7) + 0.25 * Double(i % 3)),\(i % 5),\(i % 4 == 0 ? "NA" : String(i % 6)),\"g\(i % 6)\"\n" }
        let partial = temporary("gaps.csv")
        try gaps.write(toFile: partial, atomically: true, encoding: .utf8)
        assertStops(try mpirun(["compare", partial, "--formula", "y ~ x + (1 | g)", "--formula", "y ~ x + w + (1 | g)"]),
                    mentioning: "not all fitted to the same rows", status: 1)
    }
}
