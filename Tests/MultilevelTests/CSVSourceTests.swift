import Foundation
import XCTest
@testable import Multilevel

final class CSVSourceTests: ScratchDirectoryTestCase {
    private func file(_ name: String, _ text: String) throws -> String { try write(text, to: name) }


    func testReadsEveryFixture() throws {
        let expected: [String: (rows: Int, columns: [String])] = [
            "dyestuff.csv": (30, ["Batch", "Yield"]),
            "exam.csv": (4059, ["school", "normexam", "standLRT", "sex", "schgend", "schavg", "student"]),
            "insteval.csv": (73421, ["s", "d", "studage", "lectage", "service", "dept", "y"]),
            "multimember.csv": (4000, ["y", "x", "school1", "school2", "school3", "w1", "w2", "w3", "nbhd"]),
            "pastes.csv": (60, ["strength", "batch", "cask", "sample"]),
            "penicillin.csv": (144, ["diameter", "plate", "sample"]),
            "sleepstudy.csv": (180, ["Reaction", "Days", "Subject"]),
        ]
        for (name, shape) in expected {
            let source = try CSVSource(path: Fixtures.path(name))
            XCTAssertEqual(source.rowCount, shape.rows, name)
            XCTAssertEqual(source.columnNames, shape.columns, name)
            for column in source.columnNames {
                switch try source.columnType(column) {
                case .numeric: XCTAssertEqual(try source.readNumeric(column, rows: 0..<source.rowCount).count, shape.rows)
                case .string: XCTAssertEqual(try source.readStrings(column, rows: 0..<source.rowCount).count, shape.rows)
                }
            }
        }
    }

    func testExamTypesAndFirstValues() throws {
        let source = try CSVSource(path: Fixtures.path("exam.csv"))
        XCTAssertEqual(try source.columnType("school"), .string)
        XCTAssertEqual(try source.columnType("student"), .string)
        XCTAssertEqual(try source.columnType("normexam"), .numeric)
        XCTAssertEqual(try source.columnType("schavg"), .numeric)
        XCTAssertEqual(try source.readStrings("school", rows: 0..<2), ["1", "1"])
        XCTAssertEqual(try source.readStrings("sex", rows: 0..<1), ["F"])
        XCTAssertEqual(try source.readStrings("schgend", rows: 0..<1), ["mixed"])
        XCTAssertEqual(try source.readStrings("student", rows: 0..<2), ["143", "145"])
        XCTAssertEqual(try source.readNumeric("normexam", rows: 0..<2), [0.2613242, 0.1340672])
        XCTAssertEqual(try source.readNumeric("standLRT", rows: 0..<2), [0.6190592, 0.2058022])
        XCTAssertEqual(try source.readNumeric("schavg", rows: 0..<1), [0.1661752])
    }

    func testMultimemberMissingSchools() throws {
        let source = try CSVSource(path: Fixtures.path("multimember.csv"))
        XCTAssertEqual(try source.columnType("school2"), .string)
        let school2 = try source.readStrings("school2", rows: 0..<source.rowCount)
        let w2 = try source.readNumeric("w2", rows: 0..<source.rowCount)
        XCTAssertNil(school2[0])
        XCTAssertEqual(school2[1], "134")
        XCTAssertEqual(school2.filter { $0 == nil }.count, 2383)
        XCTAssertEqual(try source.readStrings("school3", rows: 0..<source.rowCount).filter { $0 == nil }.count, 3531)
        for (school, weight) in zip(school2, w2) where school == nil {
            XCTAssertEqual(weight, 0)
        }
    }

    func testQuotedFieldsWithCommasNewlinesAndEscapes() throws {
        let path = try file("quoted.csv", "\"name\",\"note, with comma\",x\n"
            + "\"a, b\",\"line 1\nline 2\",1\n"
            + "\"say \"\"hi\"\"\",\"\",2\n"
            + "\"NA\",plain,NA\n"
            + "\"\"\"\",\"x\"\"\",")
        let source = try CSVSource(path: path)
        XCTAssertEqual(source.columnNames, ["name", "note, with comma", "x"])
        XCTAssertEqual(source.rowCount, 4)
        XCTAssertEqual(try source.readStrings("name", rows: 0..<4), ["a, b", "say \"hi\"", nil, "\""])
        XCTAssertEqual(try source.readStrings("note, with comma", rows: 0..<4), ["line 1\nline 2", nil, "plain", "x\""])
        let x = try source.readNumeric("x", rows: 0..<4)
        XCTAssertEqual(Array(x[0..<2]), [1, 2])
        XCTAssertTrue(x[2].isNaN && x[3].isNaN)
    }

    func testCRLFAndNumberSpellings() throws {
        let path = try file("crlf.csv", "a,b,c\r\n1,x,1e-05\r\n-2.5,NA,Inf\r\n,y,-Inf\r\n3,z,NaN")
        let source = try CSVSource(path: path)
        XCTAssertEqual(source.rowCount, 4)
        XCTAssertEqual(try source.columnType("a"), .numeric)
        XCTAssertEqual(try source.columnType("b"), .string)
        XCTAssertEqual(try source.columnType("c"), .numeric)
        let a = try source.readNumeric("a", rows: 0..<4)
        XCTAssertEqual(a[0], 1)
        XCTAssertEqual(a[1], -2.5)
        XCTAssertTrue(a[2].isNaN)
        XCTAssertEqual(a[3], 3)
        XCTAssertEqual(try source.readStrings("b", rows: 0..<4), ["x", nil, "y", "z"])
        let c = try source.readNumeric("c", rows: 0..<4)
        XCTAssertEqual(Array(c[0..<3]), [1e-05, .infinity, -.infinity])
        XCTAssertTrue(c[3].isNaN)
    }

    func testQuotedNumberMakesAStringColumn() throws {
        let source = try CSVSource(path: try file("q.csv", "g,y\n\"1\",1\n\"2\",2\n"))
        XCTAssertEqual(try source.columnType("g"), .string)
        XCTAssertEqual(try source.columnType("y"), .numeric)
        XCTAssertEqual(try source.readStrings("g", rows: 0..<2), ["1", "2"])
    }

    func testWrongFieldCountNamesTheLine() throws {
        let path = try file("short.csv", "a,b,c\n1,2,3\n\"x\ny\",2,3\n4,5\n")
        XCTAssertEqual(message { try CSVSource(path: path) }, "\(path) line 5: 2 fields, the header has 3")
    }

    func testUnterminatedQuoteNamesTheLine() throws {
        let path = try file("open.csv", "a,b\n1,2\n3,\"never closed\n4,5\n")
        XCTAssertEqual(message { try CSVSource(path: path) }, "\(path) line 3: unterminated quoted field")
    }

    func testEmptyMissingAndDuplicateHeaderFiles() throws {
        let empty = try file("empty.csv", "")
        XCTAssertEqual(message { try CSVSource(path: empty) }, "data file '\(empty)' is empty")
        let missing = directory.appendingPathComponent("nope.csv").path
        XCTAssertEqual(message { try CSVSource(path: missing) },
                       "cannot open data file '\(missing)': No such file or directory")
        let duplicate = try file("dup.csv", "a,b,a\n1,2,3\n")
        XCTAssertEqual(message { try CSVSource(path: duplicate) },
                       "\(duplicate): duplicate column name 'a' (columns 1 and 3)")
    }

    func testColumnErrors() throws {
        let path = try file("t.csv", "a,b,c\n1,x,2\n")
        let source = try CSVSource(path: path)
        XCTAssertEqual(message { try source.columnType("foo") }, "no column 'foo' in \(path) (columns: a, b, c)")
        XCTAssertEqual(message { try source.readNumeric("foo", rows: 0..<1) }, "no column 'foo' in \(path) (columns: a, b, c)")
        XCTAssertTrue(message { try source.readNumeric("b", rows: 0..<1) }.contains("'b'"))
        XCTAssertTrue(message { try source.readStrings("a", rows: 0..<1) }.contains("'a'"))
        XCTAssertTrue(message { try source.readNumeric("a", rows: 0..<2) }.contains("1 rows"))
        XCTAssertTrue(message { try source.readStrings("b", rows: -1..<1) }.contains("'b'"))
    }

    func testChunkedReadsConcatenateToTheWhole() throws {
        let source = try CSVSource(path: Fixtures.path("exam.csv"))
        let all = 0..<source.rowCount
        var numbers: [Double] = []
        var schools: [String?] = []
        for start in stride(from: 0, to: source.rowCount, by: 7) {
            let rows = start..<min(start + 7, source.rowCount)
            numbers += try source.readNumeric("normexam", rows: rows)
            schools += try source.readStrings("school", rows: rows)
        }
        XCTAssertEqual(numbers, try source.readNumeric("normexam", rows: all))
        XCTAssertEqual(schools, try source.readStrings("school", rows: all))
        XCTAssertEqual(try source.readNumeric("normexam", rows: 5..<5), [])
    }

    func testOpenTableChoosesTheReaderByExtension() throws {
        let csv = try file("upper.CSV", "a\n1\n")
        XCTAssertTrue(try openTable(path: csv, table: nil) is CSVSource)
        XCTAssertTrue(try openTable(path: Fixtures.path("dyestuff.h5"), table: nil) is HDF5Source)
        XCTAssertEqual(message { try openTable(path: csv, table: "data") }, "--table applies to .h5 files only, not '\(csv)'")
        let text = try file("data.txt", "a\n1\n")
        XCTAssertEqual(message { try openTable(path: text, table: nil) }, "unsupported data file '\(text)': use .csv or .h5")
        for name in ["gone.csv", "gone.h5"] {
            let missing = directory.appendingPathComponent(name).path
            XCTAssertEqual(message { try openTable(path: missing, table: nil) },
                           "cannot open data file '\(missing)': No such file or directory")
        }
    }
}
