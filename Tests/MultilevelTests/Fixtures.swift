import Foundation

/// Paths of the test fixtures: the reference datasets and lme4's fits of them
/// (made by `bench/make_references.R`).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func path(_ file: String) -> String { directory.appendingPathComponent(file).path }
}
