import Foundation
import XCTest

/// Paths of the test fixtures: the reference datasets and lme4's fits of them
/// (made by `bench/make_references.R`).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func path(_ file: String) -> String { directory.appendingPathComponent(file).path }
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

    /// Writes `text` to a file in the scratch directory and returns its path.
    func write(_ text: String, to name: String) throws -> String {
        let path = temporary(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
