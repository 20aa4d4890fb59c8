import Foundation
import XCTest
@testable import Multilevel

/// Labels are the bytes in the file: levels that differ in any byte stay apart (bytes that are not
/// UTF-8, NFC against NFD), and outputs give the bytes back as they were.
///
/// Fixtures: `sleepstudy_latin1.csv` / `.h5` are sleepstudy with subjects 308 and 309 relabelled as
/// the Latin-1 bytes `caf\xe9` and `caf\xe8` (`bench/make_label_fixtures.py`, h5py).
final class LabelTests: ScratchDirectoryTestCase {
    static let formula = "Reaction ~ Days + (Days | Subject)"

    func testFileBytesRoundTripAndStayDistinct() {
        var generator = SystemRandomNumberGenerator()
        let pieces: [[UInt8]] = [[0x63], [0xE9], [0xC3, 0xA9], [0x65, 0xCC, 0x81], [0xF4, 0x8F, 0xBF, 0xBF],
                                 [0xF4, 0x8F, 0xBE, 0x80], [0xF0, 0x9F, 0x98, 0x80], [0xED, 0xA0, 0x80], [0xC0, 0xAF],
                                 [0xFF], [0x80], [0xF4], [0x2C]]
        var seen: [ExactString: [UInt8]] = [:]
        for _ in 0..<5_000 {
            let bytes = (0..<Int.random(in: 0...5, using: &generator)).flatMap { _ in pieces.randomElement(using: &generator)! }
            let text = String(fileBytes: bytes)
            XCTAssertEqual(text.fileBytes, bytes)
            if let other = seen[ExactString(text)] { XCTAssertEqual(other, bytes, "two byte strings gave one label") }
            seen[ExactString(text)] = bytes
        }
        XCTAssertNotEqual(ExactString("caf\u{e9}"), ExactString("cafe\u{301}"))  // Swift's == calls these equal
        XCTAssertEqual(String(fileBytes: [0x63, 0xE9]).displayText, "c\\xe9")
    }

    /// The two relabelled subjects are two groups, in byte order, with the fit of the original data.
    func testBytesThatAreNotUTF8AreDistinctLevels() throws {
        let original = try LinearMixedModel.fit(Self.formula, data: openTable(path: Fixtures.path("sleepstudy.csv"), table: nil))
        for (path, table) in [("sleepstudy_latin1.csv", nil), ("sleepstudy_latin1.h5", "sleep")] {
            for column in table == nil ? ["Subject"] : ["Subject", "SubjectFixed"] {
                let data = try openTable(path: Fixtures.path(path), table: table)
                let fit = try LinearMixedModel.fit(Self.formula.replacingOccurrences(of: "Subject", with: column), data: data)
                XCTAssertEqual(fit.terms[0].levels.count, 18, "\(path) \(column)")
                XCTAssertEqual(fit.terms[0].levels.suffix(2).map(\.fileBytes), [Array("caf".utf8) + [0xE8], Array("caf".utf8) + [0xE9]])
                XCTAssertEqual(fit.objective, original.objective, accuracy: 1e-9 * original.objective)
            }
        }
    }

    func testCanonicallyEquivalentLabelsAreDistinctLevels() throws {
        var csv = try String(contentsOfFile: Fixtures.path("sleepstudy.csv"), encoding: .utf8)
        csv = csv.replacingOccurrences(of: "\"308\"", with: "\"caf\u{e9}\"").replacingOccurrences(of: "\"309\"", with: "\"cafe\u{301}\"")
        let data = try openTable(path: try write(csv, to: "nfd.csv"), table: nil)
        let fit = try LinearMixedModel.fit(Self.formula, data: data)
        XCTAssertEqual(fit.terms[0].levels.count, 18)
    }

    /// Outputs: the summary and the conditional modes carry the file's bytes, the JSON escapes them
    /// as `\udcXX`, and `predict` reads that JSON back to the same predictions as the original data.
    func testOutputsGiveTheBytesBack() throws {
        let json = temporary("fit.json"), ranef = temporary("ranef.csv")
        let data = Fixtures.path("sleepstudy_latin1.csv")
        let run = try mlm(["fit", data, "--formula", Self.formula, "--json", json, "--ranef", ranef])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("groups:  Subject, 18"), run.stdout)
        let csv = try Data(contentsOf: URL(fileURLWithPath: ranef))
        XCTAssertNotNil(csv.range(of: Data(Array("\"caf".utf8) + [0xE9, 0x22])), "ranef lacks the byte \\xe9")
        let text = try String(contentsOfFile: json, encoding: .utf8)
        XCTAssertTrue(text.contains("\"caf\\udce9\""), "JSON lacks the escaped byte")
        XCTAssertNil(text.range(of: "\u{FFFD}"))

        let fromLatin1 = try mlm(["predict", data, "--model", json])
        let originalJSON = temporary("original.json")
        XCTAssertEqual(try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", Self.formula, "--json", originalJSON]).status, 0)
        let fromOriginal = try mlm(["predict", Fixtures.path("sleepstudy.csv"), "--model", originalJSON])
        XCTAssertEqual(fromLatin1.status, 0, fromLatin1.stderr)
        let a = fromLatin1.stdout.split(separator: "\n").dropFirst().map { Double($0)! }
        let b = fromOriginal.stdout.split(separator: "\n").dropFirst().map { Double($0)! }
        XCTAssertEqual(a.count, 180)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-6 * abs(y)) }
    }

    func testJSONByteEscapesParseBack() throws {
        let label = String(fileBytes: Array("caf".utf8) + [0xE9])
        let document = JSONValue.object([("a", .string(label)), ("b", .string("\\udce9 \u{1F600}"))]).serialized()
        let parsed = try JSONValue.parse(Data(document.utf8)) as! [String: String]
        XCTAssertEqual(parsed["a"].map(ExactString.init), ExactString(label))
        XCTAssertEqual(parsed["b"], "\\udce9 \u{1F600}")  // a literal backslash is not an escape
    }
}
