import CHDF5
import Foundation
import XCTest
@testable import Multilevel

final class HDF5SourceTests: ScratchDirectoryTestCase {


    /// Asserts that two sources hold the same columns with the same types and values.
    private func assertSameTable(_ expected: TableSource, _ actual: TableSource, file: StaticString = #filePath,
                                 line: UInt = #line) throws {
        XCTAssertEqual(actual.rowCount, expected.rowCount, actual.name, file: file, line: line)
        XCTAssertEqual(Set(actual.columnNames), Set(expected.columnNames), actual.name, file: file, line: line)
        let rows = 0..<expected.rowCount
        for column in expected.columnNames {
            let type = try expected.columnType(column)
            XCTAssertEqual(try actual.columnType(column), type, "\(actual.name) \(column)", file: file, line: line)
            switch type {
            case .numeric:
                let want = try expected.readNumeric(column, rows: rows)
                let got = try actual.readNumeric(column, rows: rows)
                XCTAssertEqual(got.count, want.count, file: file, line: line)
                for (a, b) in zip(want, got) where !(a.isNaN && b.isNaN) {
                    XCTAssertEqual(a, b, accuracy: 1e-12, "\(actual.name) \(column)", file: file, line: line)
                    if abs(a - b) > 1e-12 { break }
                }
            case .string:
                XCTAssertEqual(try actual.readStrings(column, rows: rows), try expected.readStrings(column, rows: rows),
                               "\(actual.name) \(column)", file: file, line: line)
            }
        }
    }

    // MARK: Fixtures

    func testFixturesMatchTheirCSV() throws {
        for name in ["dyestuff", "exam", "insteval", "multimember", "pastes", "penicillin", "sleepstudy"] {
            let csv = try CSVSource(path: Fixtures.path("\(name).csv"))
            for table in [nil, "data", "/data"] {
                let h5 = try HDF5Source(path: Fixtures.path("\(name).h5"), table: table)
                XCTAssertEqual(h5.name, "\(Fixtures.path("\(name).h5")):/data")
                try assertSameTable(csv, h5)
            }
        }
    }

    func testMissingStringsAreNil() throws {
        let source = try HDF5Source(path: Fixtures.path("multimember.h5"), table: nil)
        let school2 = try source.readStrings("school2", rows: 0..<3)
        XCTAssertEqual(school2, [nil, "134", "133"])
    }

    func testChunkedReadsConcatenateToTheWhole() throws {
        let source = try HDF5Source(path: Fixtures.path("exam.h5"), table: nil)
        let all = 0..<source.rowCount
        let numbers = try source.readNumeric("normexam", rows: all)
        let schools = try source.readStrings("school", rows: all)
        for chunk in [1, 7, 1000] {
            var chunkedNumbers: [Double] = []
            var chunkedSchools: [String?] = []
            for start in stride(from: 0, to: source.rowCount, by: chunk) {
                let rows = start..<min(start + chunk, source.rowCount)
                chunkedNumbers += try source.readNumeric("normexam", rows: rows)
                chunkedSchools += try source.readStrings("school", rows: rows)
            }
            XCTAssertEqual(chunkedNumbers, numbers, "chunk \(chunk)")
            XCTAssertEqual(chunkedSchools, schools, "chunk \(chunk)")
        }
        XCTAssertEqual(try source.readNumeric("normexam", rows: 9..<9), [])
        XCTAssertEqual(try source.readStrings("school", rows: all.upperBound..<all.upperBound), [])
    }

    func testConcurrentReadsAgree() throws {
        let source = try HDF5Source(path: Fixtures.path("exam.h5"), table: nil)
        let whole = try source.readNumeric("normexam", rows: 0..<source.rowCount)
        let lock = NSLock()
        var pieces = [[Double]](repeating: [], count: 8)
        var failures = 0
        DispatchQueue.concurrentPerform(iterations: 8) { piece in
            let size = (source.rowCount + 7) / 8
            let rows = (piece * size)..<min((piece + 1) * size, source.rowCount)
            let other = try? HDF5Source(path: Fixtures.path("sleepstudy.h5"), table: "data")
            let values = try? source.readNumeric("normexam", rows: rows)
            let strings = try? other?.readStrings("Subject", rows: 0..<180)
            lock.lock()
            pieces[piece] = values ?? []
            if values == nil || strings?.count != 180 { failures += 1 }
            lock.unlock()
        }
        XCTAssertEqual(failures, 0)
        XCTAssertEqual(pieces.flatMap { $0 }, whole)
    }

    // MARK: Layouts and types made with the C API

    func testCompoundDatasetTable() throws {
        let path = temporary("compound.h5")
        try writeCompoundFile(path)
        for table in [nil, "people", "/people"] {
            let source = try HDF5Source(path: path, table: table)
            XCTAssertEqual(source.name, "\(path):/people")
            XCTAssertEqual(source.columnNames, ["id", "x", "f", "name", "vname", "e"])
            XCTAssertEqual(source.rowCount, 4)
            XCTAssertEqual(try source.columnType("id"), .numeric)
            XCTAssertEqual(try source.columnType("name"), .string)
            XCTAssertEqual(try source.columnType("vname"), .string)
            XCTAssertEqual(try source.readNumeric("id", rows: 0..<4), [10, 20, 30, 40])
            XCTAssertEqual(try source.readNumeric("f", rows: 1..<3), [1.5, -2.25])
            let x = try source.readNumeric("x", rows: 0..<4)
            XCTAssertEqual(x[0], 0.25)
            XCTAssertTrue(x[1].isNaN)
            XCTAssertEqual(try source.readStrings("name", rows: 0..<4), ["ann", nil, "bo", "chris123"])
            XCTAssertEqual(try source.readStrings("vname", rows: 0..<4), ["v0", nil, nil, "v3"])
            XCTAssertEqual(try source.readStrings("vname", rows: 3..<4), ["v3"])
            XCTAssertEqual(try source.columnType("e"), .string)
            XCTAssertEqual(try source.readStrings("e", rows: 0..<4), ["red", "red", "red", "red"])
        }
    }

    func testIntegerWidthsFixedStringsAndLevels() throws {
        let path = temporary("types.h5")
        try writeTypesFile(path)
        let source = try HDF5Source(path: path, table: nil)
        XCTAssertEqual(source.name, "\(path):/data")
        XCTAssertEqual(Set(source.columnNames), ["i8", "i32", "u16", "f32", "nullpad", "spacepad", "coded"])
        XCTAssertEqual(source.rowCount, 4)
        XCTAssertEqual(try source.readNumeric("i8", rows: 0..<4), [-1, 2, 127, -128])
        XCTAssertEqual(try source.readNumeric("i32", rows: 0..<4), [-100_000, 0, 7, 2_147_483_647])
        XCTAssertEqual(try source.readNumeric("u16", rows: 0..<4), [0, 65535, 7, 1])
        let f32 = try source.readNumeric("f32", rows: 0..<4)
        XCTAssertEqual(f32[0], 1.5)
        XCTAssertTrue(f32[1].isNaN)
        XCTAssertEqual(Array(f32[2...]), [-2.25, 1e10])
        XCTAssertEqual(try source.readStrings("nullpad", rows: 0..<4), ["ab", nil, nil, "abcde"])
        XCTAssertEqual(try source.readStrings("spacepad", rows: 0..<4), ["x y", "z", nil, nil])
        XCTAssertEqual(try source.columnType("coded"), .string)
        XCTAssertEqual(try source.readStrings("coded", rows: 0..<2), ["lo", "hi"])
        XCTAssertEqual(try source.readStrings("coded", rows: 3..<4), [nil])
        XCTAssertEqual(message { try source.readStrings("coded", rows: 0..<4) },
                       "column 'coded' in \(source.name): row 3 holds code 0, outside its 3 levels (codes 1 to 3)")
        XCTAssertTrue(message { try source.readNumeric("coded", rows: 0..<1) }.contains("'coded'"))
    }

    func testRootColumnsAreATable() throws {
        let path = temporary("root.h5")
        try makeFile(path) { file in
            var values: [Double] = [1, 2, 3]
            makeDataset(file, "x", type: mlm_h5t_native_double(), count: 3, &values)
            values = [4, 5, 6]
            makeDataset(file, "y", type: mlm_h5t_native_double(), count: 3, &values)
        }
        let source = try HDF5Source(path: path, table: nil)
        XCTAssertEqual(source.name, "\(path):/")
        XCTAssertEqual(source.columnNames, ["x", "y"])
        XCTAssertEqual(try source.readNumeric("y", rows: 1..<3), [5, 6])
    }

    func testClosesEverythingItOpens() throws {
        func openObjects() -> Int {
            let all = H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR
            return H5Fget_obj_count(hid_t(all), all)
        }
        let before = openObjects()
        do {
            let source = try HDF5Source(path: Fixtures.path("exam.h5"), table: nil)
            _ = try source.readStrings("school", rows: 0..<10)
            XCTAssertGreaterThan(openObjects(), before)
        }
        _ = try? HDF5Source(path: Fixtures.path("exam.h5"), table: "nope")
        let writer = try HDF5TableWriter(path: temporary("w.h5"), group: "data", columns: [.numeric("y")])
        try writer.append(numeric: ["y": [1]])
        try writer.close()
        XCTAssertEqual(openObjects(), before)
    }

    // MARK: Errors

    func testSeveralTablesNeedATableName() throws {
        let path = temporary("two.h5")
        try makeFile(path) { file in
            for (name, value) in [("a", 1.0), ("b", 2.0)] {
                let group = H5Gcreate2(file, name, mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default())
                var values = [value]
                makeDataset(group, "x", type: mlm_h5t_native_double(), count: 1, &values)
                H5Gclose(group)
            }
        }
        XCTAssertEqual(message { try HDF5Source(path: path, table: nil) },
                       "'\(path)' holds several tables (/a, /b): choose one with --table")
        XCTAssertEqual(try HDF5Source(path: path, table: "b").readNumeric("x", rows: 0..<1), [2])
        XCTAssertEqual(message { try HDF5Source(path: path, table: "/c") }, "no table '/c' in '\(path)'")
        XCTAssertEqual(message { try HDF5Source(path: path, table: "a/x") },
                       "'/a/x' in '\(path)' is not a table: expected a group of 1-D datasets, a 1-D compound dataset or a pandas DataFrame")
    }

    func testBadFiles() throws {
        let text = temporary("x.h5")
        try "not hdf5\n".write(toFile: text, atomically: true, encoding: .utf8)
        XCTAssertEqual(message { try HDF5Source(path: text, table: nil) }, "'\(text)' is not a readable HDF5 file")
        let corrupt = temporary("corrupt.h5")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("dyestuff.h5")))
        bytes.replaceSubrange(0..<4096, with: Data(repeating: 0x5a, count: 4096))
        try bytes.write(to: URL(fileURLWithPath: corrupt))
        XCTAssertEqual(message { try HDF5Source(path: corrupt, table: nil) }, "'\(corrupt)' is not a readable HDF5 file")
        let missing = temporary("missing.h5")
        XCTAssertEqual(message { try HDF5Source(path: missing, table: nil) },
                       "cannot open data file '\(missing)': No such file or directory")
    }

    func testBadTables() throws {
        let path = temporary("bad.h5")
        try makeFile(path) { file in
            let empty = H5Gcreate2(file, "empty", mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default())
            H5Gclose(empty)
            let ragged = H5Gcreate2(file, "ragged", mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default())
            var values: [Double] = [1, 2, 3]
            makeDataset(ragged, "long", type: mlm_h5t_native_double(), count: 3, &values)
            makeDataset(ragged, "short", type: mlm_h5t_native_double(), count: 2, &values)
            H5Gclose(ragged)
        }
        XCTAssertEqual(message { try HDF5Source(path: path, table: "empty") },
                       "group '/empty' in '\(path)' has no 1-D datasets to read as columns")
        XCTAssertEqual(message { try HDF5Source(path: path, table: "ragged") },
                       "column 'short' in '\(path)':/ragged has 2 rows, but column 'long' has 3")
        let exam = try HDF5Source(path: Fixtures.path("dyestuff.h5"), table: nil)
        XCTAssertEqual(message { try exam.readNumeric("foo", rows: 0..<1) },
                       "no column 'foo' in \(exam.name) (columns: Batch, Yield)")
        XCTAssertTrue(message { try exam.readNumeric("Yield", rows: 29..<31) }.contains("30 rows"))
        XCTAssertTrue(message { try exam.readStrings("Yield", rows: 0..<1) }.contains("'Yield'"))
    }

    // MARK: Writing

    func testWriterAppendsChunksAndAttributes() throws {
        let path = temporary("written.h5")
        let writer = try HDF5TableWriter(path: path, group: "sim/run", columns: [.numeric("y"), .integer("g"), .string("s")],
                                         chunkRows: 4)
        var y: [Double] = []
        var g: [Int64] = []
        var s: [String?] = []
        for size in [5, 1, 11] {
            let start = y.count
            let newY = (start..<start + size).map { $0 == 3 ? .nan : Double($0) * 0.5 }
            let newG = (start..<start + size).map { Int64($0 % 3 + 1) }
            let newS = (start..<start + size).map { $0 % 4 == 0 ? nil : "s,\($0) ü" }
            try writer.append(numeric: ["y": newY], integer: ["g": newG], strings: ["s": newS])
            y += newY
            g += newG
            s += newS
        }
        XCTAssertEqual(writer.rowCount, 17)
        try writer.setAttribute("seed", 42.5)
        try writer.setAttribute("formula", "y ~ 1 + (1 | g)")
        try writer.setAttribute("seed", 7)
        XCTAssertTrue(message { try writer.append(numeric: ["y": [1]], integer: ["g": [1, 2]], strings: ["s": ["a"]]) }
            .contains("'g'"))
        XCTAssertTrue(message { try writer.append(numeric: ["y": [1]], integer: ["g": [1]], strings: ["s": ["a"], "y": ["b"]]) }
            .contains("'y'"))
        try writer.close()

        let source = try HDF5Source(path: path, table: "sim/run")
        XCTAssertEqual(source.columnNames, ["y", "g", "s"])
        XCTAssertEqual(source.rowCount, 17)
        let readY = try source.readNumeric("y", rows: 0..<17)
        XCTAssertTrue(readY[3].isNaN)
        XCTAssertEqual(readY.enumerated().filter { $0.offset != 3 }.map(\.element),
                       y.enumerated().filter { $0.offset != 3 }.map(\.element))
        XCTAssertEqual(try source.readNumeric("g", rows: 0..<17), g.map(Double.init))
        XCTAssertEqual(try source.readStrings("s", rows: 0..<17), s)

        try makeFile(path, create: false) { file in
            var seed = 0.0
            let attribute = H5Aopen_by_name(file, "sim/run", "seed", mlm_h5p_default(), mlm_h5p_default())
            XCTAssertGreaterThanOrEqual(attribute, 0)
            H5Aread(attribute, mlm_h5t_native_double(), &seed)
            H5Aclose(attribute)
            XCTAssertEqual(seed, 7)
            XCTAssertEqual(readStringAttribute(file, "sim/run", "formula"), "y ~ 1 + (1 | g)")
        }
    }

    func testWriterLevelsReadBackAsStrings() throws {
        let path = temporary("levels.h5")
        let writer = try HDF5TableWriter(path: path, group: "/", columns: [.integer("school"), .numeric("y")])
        try writer.setLevels(["north", "south"], forColumn: "school")
        try writer.append(numeric: ["y": [1, 2, 3]], integer: ["school": [2, 1, -2147483648]])
        XCTAssertTrue(message { try writer.setLevels(["a"], forColumn: "y") }.contains("'y'"))
        try writer.close()
        XCTAssertTrue(message { try writer.append(numeric: ["y": [1]]) }.contains("closed"))
        let source = try HDF5Source(path: path, table: nil)
        XCTAssertEqual(source.columnNames, ["school", "y"])
        XCTAssertEqual(try source.readStrings("school", rows: 0..<3), ["south", "north", nil])
    }

    func testConvertCSVRoundTrips() throws {
        let path = temporary("exam.h5")
        try convertCSVToHDF5(csvPath: Fixtures.path("exam.csv"), h5Path: path)
        let csv = try CSVSource(path: Fixtures.path("exam.csv"))
        let h5 = try HDF5Source(path: path, table: "data")
        XCTAssertEqual(h5.columnNames, csv.columnNames)
        try assertSameTable(csv, h5)

        let quoted = temporary("missing.csv")
        try "g,y\n\"a\",1\nNA,NA\n\"\",3\n".write(toFile: quoted, atomically: true, encoding: .utf8)
        try convertCSVToHDF5(csvPath: quoted, h5Path: temporary("missing.h5"), group: "t")
        try assertSameTable(try CSVSource(path: quoted), try HDF5Source(path: temporary("missing.h5"), table: nil))
    }

    // MARK: Building test files with the C API

    /// Creates (or, with `create` false, opens read-only) an HDF5 file, passes it to `body`, and closes it.
    private func makeFile(_ path: String, create: Bool = true, _ body: (hid_t) throws -> Void) throws {
        let file = create
            ? H5Fcreate(path, mlm_h5f_acc_trunc(), mlm_h5p_default(), mlm_h5p_default())
            : H5Fopen(path, mlm_h5f_acc_rdonly(), mlm_h5p_default())
        XCTAssertGreaterThanOrEqual(file, 0)
        defer { H5Fclose(file) }
        try body(file)
    }

    /// Writes a 1-D dataset of `count` values of memory (and file) type `type`.
    private func makeDataset(_ location: hid_t, _ name: String, type: hid_t, count: Int,
                             _ values: UnsafeRawPointer) {
        var dims = [hsize_t(count)]
        let space = H5Screate_simple(1, &dims, nil)
        let dataset = H5Dcreate2(location, name, type, space, mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default())
        XCTAssertGreaterThanOrEqual(dataset, 0, name)
        XCTAssertGreaterThanOrEqual(H5Dwrite(dataset, type, mlm_h5s_all(), mlm_h5s_all(), mlm_h5p_default(), values), 0, name)
        H5Sclose(space)
        H5Dclose(dataset)
    }

    /// A fixed-length string type of `size` bytes with padding `pad`.
    private func fixedString(_ size: Int, _ pad: H5T_str_t) -> hid_t {
        let type = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(type, size)
        H5Tset_strpad(type, pad)
        return type
    }

    /// Writes `/people`: a 4-row compound dataset of int32, double, float, fixed string,
    /// variable-length string and enum (one member, red = 0) members.
    private func writeCompoundFile(_ path: String) throws {
        let recordSize = 48
        let name = fixedString(8, H5T_STR_NULLPAD)
        let vname = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(vname, mlm_h5t_variable())
        let colour = H5Tenum_create(mlm_h5t_native_int32())
        var red: Int32 = 0
        H5Tenum_insert(colour, "red", &red)
        let record = H5Tcreate(H5T_COMPOUND, recordSize)
        H5Tinsert(record, "id", 0, mlm_h5t_native_int32())
        H5Tinsert(record, "x", 8, mlm_h5t_native_double())
        H5Tinsert(record, "f", 16, mlm_h5t_native_float())
        H5Tinsert(record, "name", 20, name)
        H5Tinsert(record, "vname", 32, vname)
        H5Tinsert(record, "e", 40, colour)
        defer { [name, vname, colour, record].forEach { H5Tclose($0) } }

        let names = ["ann", "NA", "bo", "chris123"]
        let vnames = [strdup("v0"), strdup("NA"), strdup(""), strdup("v3")]
        defer { vnames.forEach { free($0) } }
        var bytes = [UInt8](repeating: 0, count: 4 * recordSize)
        bytes.withUnsafeMutableBytes { buffer in
            for row in 0..<4 {
                let base = row * recordSize
                buffer.storeBytes(of: Int32(10 * (row + 1)), toByteOffset: base, as: Int32.self)
                buffer.storeBytes(of: row == 1 ? .nan : 0.25 * Double(row + 1), toByteOffset: base + 8, as: Double.self)
                buffer.storeBytes(of: [0, 1.5, -2.25, 3][row] as Float, toByteOffset: base + 16, as: Float.self)
                for (offset, byte) in names[row].utf8.enumerated() { buffer[base + 20 + offset] = byte }
                buffer.storeBytes(of: UnsafePointer(vnames[row]), toByteOffset: base + 32, as: UnsafePointer<CChar>?.self)
                buffer.storeBytes(of: Int32(0), toByteOffset: base + 40, as: Int32.self)
            }
        }
        try makeFile(path) { file in makeDataset(file, "people", type: record, count: 4, bytes) }
    }

    /// Writes `/data` with int8, int32, uint16 and float32 columns, null- and space-padded
    /// fixed strings, an integer column with `levels`, a 2-D dataset and a subgroup.
    private func writeTypesFile(_ path: String) throws {
        try makeFile(path) { file in
            let group = H5Gcreate2(file, "data", mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default())
            defer { H5Gclose(group) }
            var i8: [Int8] = [-1, 2, 127, -128]
            makeDataset(group, "i8", type: mlm_h5t_native_int8(), count: 4, &i8)
            var i32: [Int32] = [-100_000, 0, 7, 2_147_483_647]
            makeDataset(group, "i32", type: mlm_h5t_native_int32(), count: 4, &i32)
            var u16: [UInt16] = [0, 65535, 7, 1]
            makeDataset(group, "u16", type: mlm_h5t_native_uint16(), count: 4, &u16)
            var f32: [Float] = [1.5, .nan, -2.25, 1e10]
            makeDataset(group, "f32", type: mlm_h5t_native_float(), count: 4, &f32)

            let nullpad = fixedString(5, H5T_STR_NULLPAD)
            var nullpadBytes = Array("ab\0\0\0NA\0\0\0\0\0\0\0\0abcde".utf8)
            makeDataset(group, "nullpad", type: nullpad, count: 4, &nullpadBytes)
            H5Tclose(nullpad)
            let spacepad = fixedString(4, H5T_STR_SPACEPAD)
            var spacepadBytes = Array("x y z   NA      ".utf8)
            makeDataset(group, "spacepad", type: spacepad, count: 4, &spacepadBytes)
            H5Tclose(spacepad)

            var codes: [Int32] = [1, 3, 0, Int32.min]
            makeDataset(group, "coded", type: mlm_h5t_native_int32(), count: 4, &codes)
            let coded = H5Dopen2(group, "coded", mlm_h5p_default())
            let levelType = fixedString(3, H5T_STR_NULLPAD)
            var levelDims: [hsize_t] = [3]
            let levelSpace = H5Screate_simple(1, &levelDims, nil)
            let levels = H5Acreate2(coded, "levels", levelType, levelSpace, mlm_h5p_default(), mlm_h5p_default())
            var levelBytes = Array("lo\0midhi\0".utf8)
            H5Awrite(levels, levelType, &levelBytes)
            H5Aclose(levels)
            H5Sclose(levelSpace)
            H5Tclose(levelType)
            H5Dclose(coded)

            var matrixDims: [hsize_t] = [2, 2]
            let matrixSpace = H5Screate_simple(2, &matrixDims, nil)
            let matrix = H5Dcreate2(group, "matrix", mlm_h5t_native_double(), matrixSpace, mlm_h5p_default(),
                                    mlm_h5p_default(), mlm_h5p_default())
            H5Dclose(matrix)
            H5Sclose(matrixSpace)
            let subgroup = H5Gcreate2(group, "sub", mlm_h5p_default(), mlm_h5p_default(), mlm_h5p_default())
            H5Gclose(subgroup)
        }
    }

    /// Reads a scalar variable-length string attribute of the object at `objectPath`.
    private func readStringAttribute(_ file: hid_t, _ objectPath: String, _ name: String) -> String? {
        let attribute = H5Aopen_by_name(file, objectPath, name, mlm_h5p_default(), mlm_h5p_default())
        guard attribute >= 0 else { return nil }
        defer { H5Aclose(attribute) }
        let type = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(type, mlm_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        defer { H5Tclose(type) }
        var pointer: UnsafeMutablePointer<CChar>?
        guard H5Aread(attribute, type, &pointer) >= 0, let pointer else { return nil }
        defer { H5free_memory(pointer) }
        return String(cString: pointer)
    }
}
