import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

/// The HTML report: an index.html with every plot inline and each plot as a well-formed SVG
/// beside it, with one point per level, per residual, per trace point.
final class ReportTests: ScratchDirectoryTestCase {
    /// Counts `<circle>` elements while checking that the SVG parses as XML.
    final class SVGCounter: NSObject, XMLParserDelegate {
        var circles = 0, lines = 0, rects = 0, root: String?
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if root == nil { root = name }
            switch name { case "circle": circles += 1; case "line": lines += 1; case "rect": rects += 1; default: break }
        }
    }

    func parse(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> SVGCounter {
        let parser = try XCTUnwrap(XMLParser(contentsOf: URL(fileURLWithPath: path)), file: file, line: line)
        let counter = SVGCounter()
        parser.delegate = counter
        XCTAssertTrue(parser.parse(), "\(path): \(parser.parserError.map { "\($0)" } ?? "")", file: file, line: line)
        XCTAssertEqual(counter.root, "svg", file: file, line: line)
        return counter
    }

    func testFitReportHasEveryPlotAsWellFormedSVG() throws {
        let dir = temporary("report")
        let profile = temporary("profile.csv")
        let run = try mlm(["fit", Fixtures.path("sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)",
                           "--bootstrap", "60", "--profile", "--profile-table", profile, "--report", dir])
        XCTAssertEqual(run.status, 0, run.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let html = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        XCTAssertTrue(html.contains("Linear mixed model fit by REML"))
        for file in files where file.hasSuffix(".svg") {
            XCTAssertTrue(html.contains("href=\"\(file)\""), "\(file) is linked from the page")
        }
        XCTAssertEqual(html.components(separatedBy: "<svg ").count - 1, files.filter { $0.hasSuffix(".svg") }.count,
                       "every plot is inline too")
        // 18 subjects; 180 rows; the traces' points; 30 histogram bins and no points.
        let expected: [String: Int] = [
            "caterpillar-Subject-_Intercept_.svg": 18, "caterpillar-Subject-Days.svg": 18,
            "qq-Subject-_Intercept_.svg": 18, "qq-Subject-Days.svg": 18,
            "residuals-fitted.svg": 180, "qq-residuals.svg": 180,
            "fitted-Subject-_Intercept_.svg": 18, "fitted-Subject-Days.svg": 18,
        ]
        for (file, points) in expected {
            XCTAssertTrue(files.contains(file), "\(file) in \(files)")
            XCTAssertEqual(try parse(dir + "/" + file).circles, points, file)
        }
        let traces = try String(contentsOfFile: profile, encoding: .utf8).split(separator: "\n").dropFirst()
        let sigmaPoints = traces.filter { $0.hasPrefix("sigma,") }.count
        XCTAssertEqual(try parse(dir + "/profile-sigma.svg").circles, sigmaPoints)
        let histogram = try parse(dir + "/bootstrap-sigma.svg")
        XCTAssertEqual(histogram.circles, 0)
        XCTAssertGreaterThanOrEqual(histogram.rects, 30 + 2)
        XCTAssertEqual(files.filter { $0.hasPrefix("profile-") }.count, 6)
        XCTAssertEqual(files.filter { $0.hasPrefix("bootstrap-") }.count, 6)
    }

    /// Large terms are sampled: InstEval's 2,972 students show 200 levels, with a note.
    func testCaterpillarOfALargeTermIsSampledWithANote() throws {
        let dir = temporary("report")
        let run = try mlm(["compare", Fixtures.path("exam.csv"), "--formula", "normexam ~ 1 + (1 | school)",
                           "--formula", "normexam ~ standLRT + (1 | school)", "--report", dir])
        XCTAssertEqual(run.status, 0, run.stderr)
        let html = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        XCTAssertTrue(html.contains("Pr(&gt;Chisq)"))
        XCTAssertEqual(try parse(dir + "/m1-caterpillar-school-_Intercept_.svg").circles, 65)
        let big = temporary("big")
        let insteval = try mlm(["fit", Fixtures.path("insteval.h5"), "--formula", "y ~ 1 + service*dept + (1|s) + (1|d)",
                                "--ml", "--report", big])
        XCTAssertEqual(insteval.status, 0, insteval.stderr)
        let svg = try String(contentsOfFile: big + "/caterpillar-s-_Intercept_.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("200 of 2972 levels shown"))
        XCTAssertEqual(try parse(big + "/caterpillar-s-_Intercept_.svg").circles, 200)
    }
}
