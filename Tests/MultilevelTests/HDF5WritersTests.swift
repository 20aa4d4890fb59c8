import CHDF5
import Foundation
import XCTest
@testable import Multilevel

/// HDF5 files written by the common writers — pandas (PyTables), h5py, hdf5r's conventions —
/// read as tables, and `mlm convert`'s files read back. The files in `Fixtures/interop/` are
/// sleepstudy written by the real libraries (`bench/make_hdf5_interop_fixtures.py`).
final class HDF5WritersTests: ScratchDirectoryTestCase {
    static func interop(_ name: String) -> String { Fixtures.path("interop/\(name)") }

    static let formula = "Reaction ~ Days + (Days | Subject)"

    /// Asserts that two fits are the same to the last bit.
    private func assertSameFit(_ a: FitResult, _ b: FitResult, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.nobs, b.nobs, file: file, line: line)
        XCTAssertEqual(a.fixedNames, b.fixedNames, file: file, line: line)
        XCTAssertEqual(a.beta, b.beta, file: file, line: line)
        XCTAssertEqual(a.theta, b.theta, file: file, line: line)
        XCTAssertEqual(a.sigma, b.sigma, file: file, line: line)
        XCTAssertEqual(a.objective, b.objective, file: file, line: line)
        XCTAssertEqual(a.conditionalModes, b.conditionalModes, file: file, line: line)
    }

    private func fit(_ formula: String, _ data: TableSource) throws -> FitResult {
        try LinearMixedModel.fit(formula, data: data, options: FitOptions(reml: true))
    }

    private lazy var csv: CSVSource = try! CSVSource(path: Fixtures.path("sleepstudy.csv"))
    private lazy var csvFit: FitResult = try! fit(Self.formula, csv)

    /// Checks the sleepstudy columns every pandas/h5py fixture holds, against the CSV.
    private func assertSleepstudy(_ source: TableSource, subject: String = "Subject", file: StaticString = #filePath,
                                  line: UInt = #line) throws {
        let rows = 0..<180
        XCTAssertEqual(source.rowCount, 180, file: file, line: line)
        XCTAssertEqual(try source.readNumeric("Reaction", rows: rows), try csv.readNumeric("Reaction", rows: rows),
                       file: file, line: line)
        XCTAssertEqual(try source.readNumeric("Days", rows: rows), try csv.readNumeric("Days", rows: rows), file: file, line: line)
        let subjects = try csv.readStrings("Subject", rows: rows)
        if try source.columnType(subject) == .string {
            XCTAssertEqual(try source.readStrings(subject, rows: rows), subjects, file: file, line: line)
        } else {
            XCTAssertEqual(try source.readNumeric(subject, rows: rows).map { rLevelName($0) }, subjects.map { $0! },
                           file: file, line: line)
        }
        assertSameFit(try fit(Self.formula.replacingOccurrences(of: "Subject", with: subject), source), csvFit,
                      file: file, line: line)
    }

    /// The `late` column (Days ≥ 5) as R's logical would print.
    private var late: [String?] {
        (try! csv.readNumeric("Days", rows: 0..<180)).map { $0 >= 5 ? "TRUE" : "FALSE" }
    }

    // MARK: pandas

    func testPandasTableFormatPackedBlocks() throws {
        let path = Self.interop("pandas_table.h5")
        for table in [nil, "df", "/df"] {
            let source = try HDF5Source(path: path, table: table)
            XCTAssertEqual(source.name, "\(path):/df")
            XCTAssertEqual(source.columnNames, ["Reaction", "Days", "Subject", "late", "SubjectCat", "SubjectNA"])
            try assertSleepstudy(source)
        }
        let source = try HDF5Source(path: path, table: "df")
        try assertSleepstudy(source, subject: "SubjectCat")  // categories stored in reverse order, mapped by code
        XCTAssertEqual(try source.readStrings("late", rows: 0..<180), late)
        var subjects = try csv.readStrings("Subject", rows: 0..<180)
        subjects[3] = nil
        subjects[100] = nil
        XCTAssertEqual(try source.readStrings("SubjectNA", rows: 0..<180), subjects)  // pandas' "nan" is missing
        XCTAssertEqual(try source.readStrings("SubjectNA", rows: 99..<102), [subjects[99], nil, subjects[101]])
        XCTAssertEqual(try fit("Reaction ~ Days + (1 | SubjectNA)", source).nobs, 178)
    }

    func testPandasTableFormatDataColumns() throws {
        let source = try HDF5Source(path: Self.interop("pandas_datacolumns.h5"), table: "df")
        XCTAssertEqual(source.columnNames, ["Reaction", "Days", "Subject", "late", "SubjectCat", "SubjectNA"])
        try assertSleepstudy(source)
        try assertSleepstudy(source, subject: "SubjectCat")
        XCTAssertEqual(try source.readStrings("late", rows: 0..<180), late)
        XCTAssertEqual(try source.readStrings("SubjectNA", rows: 2..<5), ["308", nil, "308"])
    }

    func testPandasFixedFormat() throws {
        let path = Self.interop("pandas_fixed.h5")
        let source = try HDF5Source(path: path, table: nil)
        XCTAssertEqual(source.name, "\(path):/df")
        XCTAssertEqual(source.columnNames, ["Reaction", "Days", "late", "Subject", "SubjectStr", "SubjectObj", "SubjectNA"])
        try assertSleepstudy(source)
        XCTAssertEqual(try source.readStrings("late", rows: 0..<180), late)
        XCTAssertEqual(try source.readNumeric("Days", rows: 17..<21), [7, 8, 9, 0])
        // String blocks are pickled NumPy object arrays: one of two columns, one of a pandas "str" column.
        try assertSleepstudy(source, subject: "SubjectStr")
        var subjects = try csv.readStrings("Subject", rows: 0..<180)
        subjects[3] = nil
        subjects[100] = nil
        XCTAssertEqual(try source.readStrings("SubjectObj", rows: 0..<180), subjects)
        XCTAssertEqual(try source.readStrings("SubjectNA", rows: 0..<180), subjects)
        XCTAssertEqual(try source.readStrings("SubjectNA", rows: 99..<102), [subjects[99], nil, subjects[101]])
    }

    func testPickledObjectArrays() throws {
        // pickle.dumps(np.array([["a", None], ["b", "a"]], dtype=object), protocol=5) without its frame:
        // a 2 × 2 array, items a, None, b, then "a" again by BINGET of its memo entry.
        var pickle: [UInt8] = [0x80, 0x05]
        var memo = 0
        func text(_ s: String) { pickle += [0x8C, UInt8(s.utf8.count)] + Array(s.utf8); memoize() }
        func memoize() { pickle.append(0x94); memo += 1 }
        text("numpy._core.multiarray"); text("_reconstruct"); pickle.append(0x93); memoize()
        text("numpy"); text("ndarray"); pickle.append(0x93); memoize()
        pickle += [0x4B, 0x00, 0x85]; memoize(); pickle += [0x43, 0x01, 0x62]; memoize(); pickle.append(0x87); memoize()
        pickle.append(0x52); memoize()
        pickle += [0x28, 0x4B, 0x01, 0x4B, 0x02, 0x4B, 0x02, 0x86]; memoize(); pickle += [0x68, 0x03]  // (1, (2, 2), numpy…
        text("dtype"); pickle.append(0x93); memoize(); text("O8"); pickle += [0x89, 0x88, 0x87]; memoize()
        pickle.append(0x52); memoize()
        pickle += [0x28, 0x4B, 0x03]; text("|")
        pickle += [0x4E, 0x4E, 0x4E, 0x4A, 0xFF, 0xFF, 0xFF, 0xFF, 0x4A, 0xFF, 0xFF, 0xFF, 0xFF, 0x4B, 0x3F, 0x74]; memoize()
        pickle += [0x62, 0x88, 0x5D]; memoize(); pickle.append(0x28)  // dtype built; Fortran flag True; [ (
        let memoA = memo
        text("a"); pickle += [0x4E]; text("b"); pickle += [0x68, UInt8(memoA), 0x65, 0x74]; memoize()
        pickle += [0x62, 0x2E]
        let array = try XCTUnwrap(PickledArray(pickle: pickle))
        XCTAssertEqual(array.shape, [2, 2])  // items in C order although the array is flagged Fortran-ordered
        XCTAssertEqual(array.element([0, 0]), Array("a".utf8))
        XCTAssertNil(array.element([0, 1]))
        XCTAssertEqual(array.element([1, 0]), Array("b".utf8))
        XCTAssertEqual(array.element([1, 1]), Array("a".utf8))
        XCTAssertNil(PickledArray(pickle: Array(pickle.dropLast())))  // no STOP
        XCTAssertNil(PickledArray(pickle: [0x80, 0x05, 0x4B, 0x01, 0x2E]))  // not an array
    }

    func testPickledAttributeLists() {
        XCTAssertEqual(PandasHDF5Layout.unpickle(Array("(lp0\nVy\np1\naVd\np2\na.".utf8)), .list([.string("y"), .string("d")]))
        XCTAssertEqual(PandasHDF5Layout.unpickle(Array("(lp0\n(I1\n(lp1\nVa\\u00e9\\u4e2d\np2\natp3\na.".utf8)),
                       .list([.tuple([.int(1), .list([.string("aé中")])])]))
        XCTAssertEqual(PandasHDF5Layout.unpickle(Array("(lp0\nI3\naVx\np1\nag1\na.".utf8)),
                       .list([.int(3), .string("x"), .string("x")]))
        XCTAssertNil(PandasHDF5Layout.unpickle(Array("\u{80}\u{05}".utf8)))
    }

    // MARK: Booleans and enums

    func testBooleansAreFactorsNamedLikeRsLogicals() throws {
        // lme4 names a logical fixed effect `lateTRUE`: the same fit as a string column FALSE/TRUE.
        var text = "Reaction,late,Subject\n"
        let reaction = try csv.readNumeric("Reaction", rows: 0..<180)
        let subjects = try csv.readStrings("Subject", rows: 0..<180)
        for row in 0..<180 { text += "\(reaction[row]),\"\(late[row]!)\",\"\(subjects[row]!)\"\n" }
        let strings = try fit("Reaction ~ late + (1 | Subject)", CSVSource(path: write(text, to: "late.csv")))
        XCTAssertEqual(strings.fixedNames, ["(Intercept)", "lateTRUE"])
        for (file, table) in [("h5py_types.h5", "data"), ("pandas_table.h5", "df"), ("pandas_datacolumns.h5", "df"),
                              ("pandas_fixed.h5", "df")] {
            let source = try HDF5Source(path: Self.interop(file), table: table)
            XCTAssertEqual(try source.columnType("late"), .string, file)
            assertSameFit(try fit("Reaction ~ late + (1 | Subject)", source), strings)
        }
    }

    func testEnumsAreFactorsOfTheirNames() throws {
        let source = try HDF5Source(path: Self.interop("h5py_types.h5"), table: nil)
        XCTAssertEqual(source.columnNames, ["Reaction", "Days", "Subject", "late", "SubjectEnum", "lateR", "DaysLZF"])
        try assertSleepstudy(source)
        try assertSleepstudy(source, subject: "SubjectEnum")
        XCTAssertEqual(try source.readStrings("late", rows: 0..<180), late)
        // hdf5r's logical: the member NA is missing.
        XCTAssertEqual(try source.readStrings("lateR", rows: 0..<180), [nil, nil] + late.dropFirst(2))
    }

    // MARK: Filters

    func testFiltersTheLibraryLacksAreNamed() throws {
        let blosc = Self.interop("pandas_blosc.h5")
        try XCTSkipIf(H5Zfilter_avail(32001) > 0 || H5Zfilter_avail(32000) > 0, "an LZF or blosc plugin is installed")
        let pandas = try HDF5Source(path: blosc, table: nil)
        XCTAssertEqual(pandas.columnNames, ["Reaction", "Days"])
        XCTAssertEqual(message { try pandas.columnType("Reaction") },
                       "column 'Reaction' in \(blosc):/df is compressed with HDF5 filter 'blosc' (id 32001), which this "
                       + "HDF5 library cannot decode: install the filter's plugin (see HDF5_PLUGIN_PATH)")
        XCTAssertTrue(message { try pandas.readNumeric("Days", rows: 0..<1) }.contains("'blosc' (id 32001)"))
        let h5py = try HDF5Source(path: Self.interop("h5py_types.h5"), table: nil)
        XCTAssertTrue(message { try h5py.readNumeric("DaysLZF", rows: 0..<1) }
            .hasPrefix("column 'DaysLZF' in \(h5py.name) is compressed with HDF5 filter 'lzf' (id 32000)"))
        // Shuffle and deflate are built in: pandas_table.h5 is compressed with both and reads.
        XCTAssertEqual(try HDF5Source(path: Self.interop("pandas_table.h5"), table: nil).readNumeric("Days", rows: 0..<2), [0, 1])
        let run = try mlm(["fit", blosc, "--formula", "Reaction ~ Days + (1 | Days)"])
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.stderr.hasPrefix("mlm: error: column 'Reaction' in \(blosc):/df is compressed with HDF5 filter 'blosc'"),
                      run.stderr)
    }

    // MARK: Finding the table

    func testTheOnlyTableInANestedGroupIsFound() throws {
        let path = Self.interop("h5py_nested.h5")
        let source = try HDF5Source(path: path, table: nil)
        XCTAssertEqual(source.name, "\(path):/a/b")
        try assertSleepstudy(source)

        let two = temporary("two.h5")
        let file = H5Fcreate(two, mlm_h5f_acc_trunc(), mlm_h5p_default(), mlm_h5p_default())
        for group in ["p", "p/q", "r", "r/s", "r/s/t"] {
            H5Gclose(H5Gcreate2(file, group, mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default()))
        }
        for group in ["p/q", "r/s/t"] {
            var dims: [hsize_t] = [2]
            let space = H5Screate_simple(1, &dims, nil)
            var values: [Double] = [1, 2]
            let dataset = H5Dcreate2(file, "\(group)/x", mlm_h5t_native_double(), space, mlm_h5p_default(),
                                     mlm_h5p_default(), mlm_h5p_default())
            H5Dwrite(dataset, mlm_h5t_native_double(), mlm_h5s_all(), mlm_h5s_all(), mlm_h5p_default(), &values)
            H5Dclose(dataset)
            H5Sclose(space)
        }
        H5Fclose(file)
        XCTAssertEqual(message { try HDF5Source(path: two, table: nil) },
                       "'\(two)' holds several tables (/p/q, /r/s/t): choose one with --table")
        XCTAssertEqual(try HDF5Source(path: two, table: "r/s/t").readNumeric("x", rows: 0..<2), [1, 2])
    }

    // MARK: Messages that name the problem

    func testDatasetsThatAreNotColumnsSayWhatTheyAre() throws {
        let source = try HDF5Source(path: Self.interop("h5py_misnamed.h5"), table: nil)
        XCTAssertEqual(source.columnNames, ["y", "school", "colour"])
        XCTAssertEqual(message { try source.columnType("matrix") },
                       "'matrix' in \(source.name) is a 2-D dataset (4 × 2), not a column: columns are 1-D datasets")
        XCTAssertEqual(message { try source.readNumeric("scalar", rows: 0..<1) },
                       "'scalar' in \(source.name) is a scalar dataset, not a column: columns are 1-D datasets")
        XCTAssertEqual(message { try source.columnType("gone") },
                       "'gone' in \(source.name) is a link to an object that does not exist (a dangling soft or external "
                       + "link), not a column: columns are 1-D datasets")
        XCTAssertTrue(message { try source.columnType("nothing") }.hasPrefix("no column 'nothing' in \(source.name)"))
    }

    func testCodesOutsideTheLevelsAreErrorsNamingTheRow() throws {
        let source = try HDF5Source(path: Self.interop("h5py_misnamed.h5"), table: nil)
        // R's NA_integer_ (−2³¹) is missing; code 5 of 2 levels is an error, not a missing value.
        XCTAssertEqual(try source.readStrings("school", rows: 0..<3), ["north", "south", nil])
        XCTAssertEqual(message { try source.readStrings("school", rows: 2..<4) },
                       "column 'school' in \(source.name): row 4 holds code 5, outside its 2 levels (codes 1 to 2)")
        XCTAssertEqual(try source.readStrings("colour", rows: 0..<2), ["red", "blue"])
        XCTAssertEqual(message { try source.readStrings("colour", rows: 0..<4) },
                       "column 'colour' in \(source.name): row 3 holds 7, which is not a value of its HDF5 enum (0 red, 1 blue)")
        let run = try mlm(["fit", Self.interop("h5py_misnamed.h5"), "--formula", "y ~ 1 + (1 | school)"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, "mlm: error: column 'school' in \(source.name): row 4 holds code 5, outside its 2 levels "
                       + "(codes 1 to 2)\n")
    }

    // MARK: mlm convert

    /// Asserts that `actual` holds `expected`'s columns, in order, with the same types and values (NaN equal to NaN).
    private func assertSameTable(_ expected: TableSource, _ actual: TableSource, file: StaticString = #filePath,
                                 line: UInt = #line) throws {
        XCTAssertEqual(actual.columnNames, expected.columnNames, file: file, line: line)
        XCTAssertEqual(actual.rowCount, expected.rowCount, file: file, line: line)
        let rows = 0..<expected.rowCount
        for column in expected.columnNames {
            let type = try expected.columnType(column)
            XCTAssertEqual(try actual.columnType(column), type, column, file: file, line: line)
            if type == .numeric {
                let want = try expected.readNumeric(column, rows: rows), got = try actual.readNumeric(column, rows: rows)
                XCTAssertEqual(want.map { $0.isNaN ? "NaN" : "\($0.bitPattern)" }, got.map { $0.isNaN ? "NaN" : "\($0.bitPattern)" },
                               column, file: file, line: line)
            } else {
                XCTAssertEqual(try actual.readStrings(column, rows: rows), try expected.readStrings(column, rows: rows),
                               column, file: file, line: line)
            }
        }
    }

    func testConvertStreamsTheCSVAsCSVSourceReadsItInAnyChunkAndBufferSize() throws {
        let texts = [
            "\u{FEFF}id,name,x,note\r\n1,\"a, b\",2.5,\"line1\nline2\"\r\n\r\n2,NA,NA,\"say \"\"hi\"\"\"\n"
                + "3,\"\",NaN,plain\n4,é,1e-5 ,\n5,\"NA\",-Inf,\"\"\n",
            "a,b\r1,x\r\r2,y",          // CR line endings, no final line ending
            "a,b\n1,\n2,",               // a final comma
            "g,y\n\"1\",1\n\"2\",2\n",     // a quoted number makes a string column
            "only\n",                     // no rows
        ]
        // Buffers of 4–7 bytes split BOMs, CRLFs, "" escapes and numbers across refills.
        let sizes = [(chunk: 1, buffer: 4), (2, 5), (3, 7), (1000, 1 << 20)]
        for (index, text) in texts.enumerated() {
            let csv = try write(text, to: "t\(index).csv")
            let expected = try CSVSource(path: csv)
            for (chunk, buffer) in sizes {
                let h5 = temporary("t\(index)-\(chunk).h5")
                let result = try convertCSVToHDF5(csvPath: csv, h5Path: h5, group: "data", chunkRows: chunk, bufferSize: buffer)
                XCTAssertEqual(result.rowCount, expected.rowCount)
                try assertSameTable(expected, try HDF5Source(path: h5, table: nil))
            }
        }
        // The first file's values, spelled out.
        let h5 = try HDF5Source(path: temporary("t0-2.h5"), table: "data")
        XCTAssertEqual(try h5.readStrings("name", rows: 0..<5), ["a, b", nil, nil, "é", nil])
        XCTAssertEqual(try h5.readStrings("note", rows: 0..<5), ["line1\nline2", "say \"hi\"", "plain", nil, nil])
        XCTAssertEqual(try h5.readNumeric("x", rows: 0..<5).map { $0.isNaN ? -1 : $0 }, [2.5, -1, -1, 1e-5, -.infinity])

        // What CSVSource refuses, with its message (line numbers counted across refills), and nothing written.
        let padding = String(repeating: "1,2\r\n", count: 40)
        for (index, text) in ["a,b\n\(padding)3\n", "a,b\n\(padding)1,\"2\n", "a,b\r\n\(padding)\"1\"x,2\n", "",
                              "a,a\n1,2\n"].enumerated() {
            let csv = try write(text, to: "bad\(index).csv")
            let h5 = temporary("bad\(index).h5")
            XCTAssertEqual(message { try convertCSVToHDF5(csvPath: csv, h5Path: h5, group: "data", chunkRows: 2, bufferSize: 5) },
                           message { try CSVSource(path: csv) })
            XCTAssertFalse(FileManager.default.fileExists(atPath: h5), "nothing is written for a bad CSV")
        }
    }

    func testConvertCommandGivesTheSameFit() throws {
        func fitJSON(_ file: String) throws -> NSDictionary {
            let json = temporary(UUID().uuidString + ".json")
            let run = try mlm(["fit", file, "--formula", Self.formula, "--json", json])
            XCTAssertEqual(run.status, 0, run.stderr)
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
            return object.filter { $0.key != "data" } as NSDictionary
        }
        let csv = Fixtures.path("sleepstudy.csv")
        let expected = try fitJSON(csv)
        for (table, chunk) in [("data", "65536"), ("runs/sleep", "7")] {
            let h5 = temporary("sleep-\(chunk).h5")
            let run = try mlm(["convert", csv, h5, "--table", table, "--chunk-rows", chunk])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.stdout, "wrote 180 rows of 3 columns (2 numeric, 1 string) to \(h5), table /\(table)\n")
            XCTAssertEqual(try fitJSON(h5), expected)
        }
        let bad = try mlm(["convert", csv, temporary("out.csv")])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.hasPrefix("mlm: error: the output '"), bad.stderr)
        let missing = try mlm(["convert", temporary("none.csv"), temporary("out.h5")])
        XCTAssertEqual(missing.stderr, "mlm: error: cannot open data file '\(temporary("none.csv"))': No such file or directory\n")
    }
}
