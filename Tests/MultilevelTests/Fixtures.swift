import Foundation
import XCTest
@testable import Multilevel

/// Paths of the test fixtures: the reference datasets and lme4's fits of them
/// (made by `bench/make_references.R`).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func path(_ file: String) -> String { directory.appendingPathComponent(file).path }
}

/// The Hessian by central differences of a gradient (column-major), steps of 1e-4 of each |x_j|
/// (at least 1e-5): to check an analytic information matrix against.
func differenceHessian(at x: [Double], gradient: ([Double]) throws -> [Double]) rethrows -> [Double] {
    let n = x.count
    var hessian = [Double](repeating: 0, count: n * n)
    for j in 0..<n {
        let h = 1e-4 * max(abs(x[j]), 0.1)
        var plus = x, minus = x
        plus[j] += h
        minus[j] -= h
        let gp = try gradient(plus), gm = try gradient(minus)
        for i in 0..<n { hessian[i + j * n] = (gp[i] - gm[i]) / (2 * h) }
    }
    return hessian
}

/// A test case with a fresh scratch directory per test, removed afterwards.
class ScratchDirectoryTestCase: XCTestCase {
    private(set) var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mlm-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    /// A path in the scratch directory.
    func temporary(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The message of the `InputError` that `body` throws (failing if it throws none, another error, or several lines).
    func message(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try body()
            XCTFail("expected an InputError", file: file, line: line)
        } catch let error as InputError {
            XCTAssertFalse(error.message.contains("\n"), "message is not one line", file: file, line: line)
            return error.message
        } catch {
            XCTFail("expected an InputError, got \(error)", file: file, line: line)
        }
        return ""
    }

    struct Run { let status: Int32; let stdout: String; let stderr: String; let signalled: Bool }

    /// `mlm` is built beside the test bundle (`swift build --build-tests` builds every product).
    static let binary: String = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if dir.lastPathComponent == "MacOS" { dir = dir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
        return dir.appendingPathComponent("mlm").path
    }()

    /// Bad input: exit `status` (1: an input error; 2: an option the parser refuses), exactly one
    /// line on stderr containing `expected`, no trap.
    func assertFails(_ arguments: [String], mentioning expected: String, status: Int32 = 1,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try mlm(arguments)
        XCTAssertFalse(run.signalled, "crashed: \(run.stderr)", file: file, line: line)
        XCTAssertEqual(run.status, status, run.stderr, file: file, line: line)
        let lines = run.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line, got: \(run.stderr)", file: file, line: line)
        XCTAssertTrue(run.stderr.hasPrefix("mlm: error: "), run.stderr, file: file, line: line)
        XCTAssertTrue(run.stderr.contains(expected), "'\(run.stderr)' should mention '\(expected)'", file: file, line: line)
    }

    /// Runs the `mlm` binary with `arguments`.
    func mlm(_ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: e, as: UTF8.self),
                   signalled: process.terminationReason == .uncaughtSignal)
    }

    /// Writes `text` to a file in the scratch directory and returns its path.
    func write(_ text: String, to name: String) throws -> String {
        let path = temporary(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// Lines of a fit's `--verbose` log, from any thread.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ line: String) { lock.lock(); stored.append(line); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}
