import Foundation
import XCTest

/// Issue 10: what is at an output path is written, not replaced. A symbolic link is followed
/// (the link stays, its target gets the output); a device, FIFO, socket or folder is refused in
/// one line naming the path, before the fit, and left as it was; only regular files are written
/// beside and renamed onto. Every output: --json, --ranef, --bootstrap-table (.csv, .h5),
/// --profile-table, --checkpoint, --report DIR (and the files in it), predict's and ranef's
/// --out, simulate's --out.
final class OutputPathTests: ScratchDirectoryTestCase {
    let dyestuff = Fixtures.path("dyestuff.csv")
    let model = "Yield ~ 1 + (1 | Batch)"

    /// Runs `mlm arguments`, killed after `limit` seconds (a FIFO opened for reading blocks forever).
    func run(_ arguments: [String], limit: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
        let out = temporary("run-\(UUID().uuidString).out"), err = temporary("run-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle(forWritingAtPath: out)!
        process.standardError = FileHandle(forWritingAtPath: err)!
        let start = Date()
        try process.run()
        while process.isRunning && Date().timeIntervalSince(start) < limit { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            XCTFail("mlm \(arguments.joined(separator: " ")) still running after \(Int(limit)) s")
        }
        process.waitUntilExit()
        defer { unlink(out); unlink(err) }
        return (process.terminationStatus, try String(contentsOfFile: out, encoding: .utf8), try String(contentsOfFile: err, encoding: .utf8))
    }

    func fileType(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & S_IFMT : nil
    }

    /// The commands with one output each, `%@` standing for its path.
    var outputs: [(option: String, arguments: [String])] {
        let fit = ["fit", dyestuff, "--formula", model]
        return [
            ("--json", fit + ["--json", "%@"]),
            ("--ranef", fit + ["--ranef", "%@"]),
            ("--bootstrap-table", fit + ["--bootstrap", "5", "--bootstrap-table", "%@.csv"]),
            ("--bootstrap-table", fit + ["--bootstrap", "5", "--bootstrap-table", "%@.h5"]),
            ("--profile-table", fit + ["--profile", "--profile-table", "%@"]),
            ("--checkpoint", fit + ["--bootstrap", "5", "--checkpoint", "%@"]),
            ("--out", ["ranef", dyestuff, "--formula", model, "--out", "%@"]),
            ("--out", ["simulate", "--rows", "200", "--design", "nested3", "--out", "%@"]),
            ("--out", ["predict", dyestuff, "--model", temporary("dyestuff-fit.json"), "--out", "%@"]),
        ]
    }

    func substitute(_ arguments: [String], _ path: String) -> [String] {
        arguments.map { $0.contains("%@") ? $0.replacingOccurrences(of: "%@", with: path) : $0 }
    }

    /// The model `mlm predict` reads: dyestuff's own fit.
    func makePredictModel() throws {
        let made = try run(["fit", dyestuff, "--formula", model, "--json", temporary("dyestuff-fit.json")])
        XCTAssertEqual(made.status, 0, made.stderr)
    }

    func arguments(_ entry: (option: String, arguments: [String]), _ path: String) -> [String] {
        substitute(entry.arguments, path)
    }

    /// A link to a file (existing or not yet) is written through: the link stays a link.
    func testSymbolicLinksAreWrittenThrough() throws {
        try makePredictModel()
        for (k, entry) in outputs.enumerated() {
            for existing in [true, false] {
                // The target's name carries the suffix the option needs (.csv, .h5).
                let suffix = entry.arguments.first { $0.contains("%@") }!.replacingOccurrences(of: "%@", with: "")
                let target = temporary("target-\(k)-\(existing)\(suffix)")
                let link = temporary("link-\(k)-\(existing)")
                if existing { try "old\n".write(toFile: target, atomically: false, encoding: .utf8) }
                try FileManager.default.createSymbolicLink(atPath: link + suffix, withDestinationPath: target)
                if entry.option == "--checkpoint" && existing { unlink(target) }   // "old" is no checkpoint
                let result = try run(arguments(entry, link))
                XCTAssertEqual(result.status, 0, "\(entry.arguments): \(result.stderr)")
                XCTAssertEqual(fileType(link + suffix), S_IFLNK, "\(entry.arguments): the link was replaced")
                XCTAssertEqual(fileType(target), S_IFREG, "\(entry.arguments)")
                let written = FileManager.default.contents(atPath: target) ?? Data()
                XCTAssertGreaterThan(written.count, 4, "\(entry.arguments): nothing written through the link")
            }
        }
    }

    /// `--report DIR` through a link to a folder, and a file in it that is a link.
    func testReportFolderThroughALink() throws {
        let folder = temporary("real-report"), link = temporary("report-link"), elsewhere = temporary("elsewhere.html")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: folder)
        try FileManager.default.createSymbolicLink(atPath: folder + "/index.html", withDestinationPath: elsewhere)
        let result = try run(["fit", dyestuff, "--formula", model, "--report", link])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(fileType(link), S_IFLNK)
        XCTAssertEqual(fileType(folder + "/index.html"), S_IFLNK)
        XCTAssertTrue(try String(contentsOfFile: elsewhere, encoding: .utf8).contains("<!DOCTYPE html>"))
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: folder).contains { $0.hasSuffix(".svg") })
    }

    /// A FIFO, a character device (made here, with `/dev/null`'s numbers), a link to either, and a
    /// folder are refused before the fit, in one line naming the path, and left as they were.
    func testNonRegularTargetsAreRefusedAndKept() throws {
        try makePredictModel()
        let fifo = temporary("fifo")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let device = temporary("null")
        let haveDevice = mknod(device, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0
        let toFifo = temporary("to-fifo")
        try FileManager.default.createSymbolicLink(atPath: toFifo, withDestinationPath: fifo)
        let folder = temporary("a-folder")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let only = "; mlm writes only regular files"
        var targets: [(path: String, kind: mode_t, reason: String)] = [
            (fifo, S_IFIFO, "not a regular file (a pipe or FIFO)" + only), (toFifo, S_IFLNK, "not a regular file (a pipe or FIFO)" + only),
            (folder, S_IFDIR, "Is a directory"),
        ]
        if haveDevice { targets.append((device, S_IFCHR, "not a regular file (a character device)" + only)) }
        for entry in outputs {
            for target in targets {
                let args = arguments(entry, target.path)
                let path = args.first { $0.hasPrefix(target.path) }!
                // Only the exact path is non-regular; `.csv`/`.h5` suffixes make another path.
                guard path == target.path else { continue }
                let result = try run(args)
                XCTAssertEqual(result.status, 1, "\(args): \(result.stderr)")
                XCTAssertEqual(result.stderr, "mlm: error: \(entry.option) '\(path)': \(target.reason)\n", "\(args)")
                XCTAssertEqual(result.stdout, "", "\(args): refused after the fit")
                XCTAssertEqual(fileType(target.path), target.kind, "\(args): \(target.path) was replaced")
            }
        }
        // The bootstrap table's own suffix: a FIFO named boot.csv.
        let csvFifo = temporary("boot.csv")
        XCTAssertEqual(mkfifo(csvFifo, 0o644), 0)
        let result = try run(["fit", dyestuff, "--formula", model, "--bootstrap", "5", "--bootstrap-table", csvFifo])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(fileType(csvFifo), S_IFIFO)
    }

    /// Outputs that could not be written are refused before the fit, naming the path.
    func testUnwritableOutputsAreRefusedBeforeTheFit() throws {
        let file = temporary("regular.txt")
        try "x\n".write(toFile: file, atomically: false, encoding: .utf8)
        let fit = ["fit", dyestuff, "--formula", model]
        for (arguments, expected) in [
            (fit + ["--json", "/proc/mlm-test.json"], "mlm: error: --json '/proc/mlm-test.json': the folder '/proc' does not exist or is not writable\n"),
            (fit + ["--json", directory.path], "mlm: error: --json '\(directory.path)': Is a directory\n"),
            (fit + ["--report", file], "mlm: error: --report '\(file)': it exists and is not a folder\n"),
            (fit + ["--ranef", file + "/x.csv"], "mlm: error: --ranef '\(file)/x.csv': the folder '\(file)' does not exist or is not writable\n"),
            (["compare", dyestuff, "--formula", model, "--formula", "Yield ~ 1 + (1 | Batch)", "--json", "/proc/x.json"],
             "mlm: error: --json '/proc/x.json': the folder '/proc' does not exist or is not writable\n"),
        ] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr, expected, "\(arguments)")
            XCTAssertEqual(result.stdout, "", "\(arguments): refused after the fit")
        }
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "x\n")
    }

    /// A regular file is replaced whole and keeps its permissions; no temporary file is left.
    func testRegularFileIsReplacedAndKeepsItsMode() throws {
        let json = temporary("fit.json")
        try "old\n".write(toFile: json, atomically: false, encoding: .utf8)
        chmod(json, 0o640)
        let result = try run(["fit", dyestuff, "--formula", model, "--json", json])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(try String(contentsOfFile: json, encoding: .utf8).hasPrefix("{"))
        var info = stat()
        stat(json, &info)
        XCTAssertEqual(info.st_mode & 0o777, 0o640)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("mlm-") }, [])
    }

    /// `-` (or `/dev/stdout`) is standard output, whatever it is, and the summary moves to
    /// stderr; other names of descriptors are refused; only one output may take stdout.
    func testDashIsStandardOutput() throws {
        let fit = ["fit", dyestuff, "--formula", model]
        for name in ["-", "/dev/stdout"] {
            let result = try run(fit + ["--json", name])
            XCTAssertEqual(result.status, 0, result.stderr)
            let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            XCTAssertEqual(object?["nobs"] as? Int, 30, "\(name): \(result.stdout)")
            XCTAssertTrue(result.stderr.contains("Linear mixed model fit by REML"), result.stderr)
            XCTAssertNil(fileType(temporary("-")))
        }
        let ranef = try run(["ranef", dyestuff, "--formula", model, "--out", "-"])
        XCTAssertEqual(ranef.status, 0, ranef.stderr)
        XCTAssertTrue(ranef.stdout.hasPrefix("grpvar,term,grp,condval,condsd\n"), ranef.stdout)
        let stderr = try run(fit + ["--json", "/dev/stderr"])
        XCTAssertEqual(stderr.status, 1)
        XCTAssertEqual(stderr.stderr, "mlm: error: --json '/dev/stderr': names an open file descriptor, not a file (give '-' for standard output)\n")
        let two = try run(fit + ["--json", "-", "--ranef", "-"])
        XCTAssertEqual(two.status, 2)
        XCTAssertEqual(two.stderr, "mlm: error: only one output can be standard output ('-'), not --json and --ranef. See 'mlm fit --help'.\n")
    }
}
