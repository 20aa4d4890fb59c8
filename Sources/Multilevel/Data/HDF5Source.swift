import CHDF5
import Foundation

/// The one lock every HDF5 call in the package is made under: the library is not thread-safe.
private let hdf5Lock = NSLock()

/// Runs `body`, which makes HDF5 calls, while holding the process-wide HDF5 lock.
///
/// Not reentrant: `body` must not call `withHDF5` again.
func withHDF5<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    return try body()
}

/// A table in an HDF5 file, read by column in row ranges (hyperslabs).
///
/// These layouts are tables:
/// - a group whose 1-D datasets are the columns (what h5py, rhdf5 and hdf5r write;
///   subgroups and datasets of other ranks are skipped), in creation order if the group
///   indexes it, else in name order;
/// - a 1-D compound dataset whose members are the columns;
/// - a pandas DataFrame written by `to_hdf` in `format="table"` or `format="fixed"`
///   (the group pandas names by its key; `PandasHDF5Layout.swift`).
///
/// Integer and floating-point columns of any width are `.numeric` (HDF5 converts them to
/// double on read). Fixed- and variable-length strings are `.string`, with the padding of
/// fixed-length strings stripped. These are `.string` too, as factors:
/// - an integer column with a string-array attribute `levels`: code k is `levels[k-1]`
///   (R's convention); R's `NA_integer_` (−2³¹) is missing, any other code outside
///   `1...levels.count` is an error naming the row;
/// - an HDF5 enum (h5py's booleans, hdf5r's logicals and factors): each value is its
///   member's name, the name "NA" is missing;
/// - an 8-bit bitfield (PyTables' booleans): "FALSE" or "TRUE";
/// - a pandas categorical: its category, code −1 missing.
/// Factor levels are sorted as every string column's are (`LevelSet`), so a boolean's
/// levels are FALSE, TRUE and lme4's coefficient name `flagTRUE` follows.
/// Other HDF5 classes, and datasets compressed by a filter this HDF5 library cannot
/// decode, are reported when such a column is used.
/// Missing values are NaN in numeric columns and "NA" or "" in string columns.
///
/// Each read touches only the requested rows, so memory stays bounded by the caller's
/// chunk size. All HDF5 calls are serialised by one process-wide lock.
public final class HDF5Source: TableSource {
    public let name: String
    public let columnNames: [String]
    public let rowCount: Int

    private let file: hid_t
    /// The open group or compound dataset that is the table.
    private let table: hid_t
    private let columns: [Column]
    private let indexByName: [ExactString: Int]
    /// Children of the table's group that are not columns, with the reason, for messages.
    private let notColumns: [String: String]
    /// Datasets and types the columns use, closed with the source.
    private let ownedDatasets: [hid_t]
    private let ownedTypes: [hid_t]

    /// How one column is stored, as far as reading it goes.
    enum Kind {
        case numeric
        case variableString(cset: H5T_cset_t)
        /// Fixed-length strings; `missing` is a further spelling of a missing value (pandas' "nan").
        case fixedString(size: Int, cset: H5T_cset_t, pad: H5T_str_t, missing: [UInt8]?)
        /// R's 1-based integer codes of `levels`.
        case coded(levels: [String])
        /// pandas' 0-based category codes (−1 missing).
        case categorical(categories: [String])
        /// An HDF5 enum read through `memoryType` (a native enum, owned by the source).
        case enumerated(memoryType: hid_t, size: Int, signed: Bool, names: [Int64: String])
        /// An 8-bit bitfield holding booleans.
        case boolean
        /// Strings decoded when the table was opened (pandas' pickled `format="fixed"` string blocks).
        case decoded([String?])
        case unsupported(hdf5Class: String)
        /// A column that cannot be read, with the one-line reason.
        case unreadable(String)
    }

    /// Where a column's values lie in its dataset.
    enum Location {
        /// The whole of a 1-D dataset.
        case dataset
        /// A member of a 1-D compound dataset.
        case member(String)
        /// Element `index` of a 1-D array member of `width` elements (pandas' `values_block_N`).
        case packed(member: String, width: Int, index: Int)
        /// Column `index` of a 2-D dataset of rows × columns, or columns × rows if `transposed`.
        case matrix(index: Int, transposed: Bool)
    }

    /// A column: a dataset (owned by the source) and where in it the column lies.
    struct Column {
        let name: String
        let dataset: hid_t
        let location: Location
        let kind: Kind
    }

    /// The columns of a table as one layout finds them.
    struct Layout {
        var columns: [Column] = []
        var rowCount: Int = 0
        var notColumns: [String: String] = [:]
        var datasets: [hid_t] = []
        var types: [hid_t] = []

        /// Closes what it holds (after a failure).
        func close() {
            for dataset in datasets { H5Dclose(dataset) }
            for type in types { H5Tclose(type) }
        }
    }

    /// The objects a successful open leaves for the instance to keep.
    private struct Opened {
        let file: hid_t
        let table: hid_t
        let tablePath: String
        let layout: Layout
    }

    /// Opens `path` read-only and finds the table `table` in it.
    ///
    /// `table` is a path in the file ("data", "/data", "/grp/table", or a pandas key "df").
    /// When nil, the file's only table is used, searched for in every group (a pandas
    /// DataFrame's group counts as one table); otherwise this throws, listing the candidates.
    /// Throws `InputError` (one line) if the file is missing or not HDF5, the table is
    /// not found or is not a table, or the columns differ in length.
    public init(path: String, table: String?) throws {
        try requireReadableFile(path)
        let opened = try withHDF5 { try HDF5Source.open(path: path, table: table) }
        file = opened.file
        self.table = opened.table
        name = "\(path):\(opened.tablePath)"
        notColumns = opened.layout.notColumns
        ownedDatasets = opened.layout.datasets
        ownedTypes = opened.layout.types
        rowCount = opened.layout.rowCount
        columnNames = opened.layout.columns.map(\.name)
        // A dataset compressed with a filter this library lacks makes its columns unreadable.
        let name = self.name
        columns = withHDF5 {
            var missing: [hid_t: String?] = [:]
            return opened.layout.columns.map { column in
                if case .decoded = column.kind { return column }
                if missing[column.dataset] == nil { missing[column.dataset] = HDF5Source.missingFilter(column.dataset) }
                guard let filter = missing[column.dataset]! else { return column }
                return Column(name: column.name, dataset: column.dataset, location: column.location,
                              kind: .unreadable("column '\(column.name)' in \(name) is compressed with HDF5 filter \(filter), "
                                  + "which this HDF5 library cannot decode: install the filter's plugin (see HDF5_PLUGIN_PATH)"))
            }
        }
        indexByName = Dictionary(opened.layout.columns.enumerated().map { (ExactString($1.name), $0) }, uniquingKeysWith: { first, _ in first })
    }

    deinit {
        withHDF5 {
            for dataset in ownedDatasets { H5Dclose(dataset) }
            for type in ownedTypes { H5Tclose(type) }
            H5Oclose(table)
            H5Fclose(file)
        }
    }

    public func columnType(_ column: String) throws -> ColumnType {
        let column = try self.column(column)
        switch column.kind {
        case .numeric: return .numeric
        case .variableString, .fixedString, .coded, .categorical, .enumerated, .boolean, .decoded: return .string
        case .unsupported(let hdf5Class): throw unsupported(column.name, hdf5Class)
        case .unreadable(let reason): throw InputError(reason)
        }
    }

    public func readNumeric(_ column: String, rows: Range<Int>) throws -> [Double] {
        let column = try self.column(column)
        try checkRows(rows, column: column.name)
        switch column.kind {
        case .numeric: return try readDoubles(column, rows: rows)
        case .variableString, .fixedString, .coded, .categorical, .enumerated, .boolean, .decoded:
            throw InputError("column '\(column.name)' in \(name) holds strings, not numbers")
        case .unsupported(let hdf5Class): throw unsupported(column.name, hdf5Class)
        case .unreadable(let reason): throw InputError(reason)
        }
    }

    public func readStrings(_ column: String, rows: Range<Int>) throws -> [String?] {
        let column = try self.column(column)
        try checkRows(rows, column: column.name)
        switch column.kind {
        case .numeric:
            throw InputError("column '\(column.name)' in \(name) holds numbers, not strings")
        case .variableString(let cset):
            return try readVariableStrings(column, cset: cset, rows: rows)
        case .fixedString(let size, let cset, let pad, let missing):
            return try readFixedStrings(column, size: size, cset: cset, pad: pad, missing: missing, rows: rows)
        case .coded(let levels):
            return try readDoubles(column, rows: rows).enumerated().map { offset, code in
                if code >= 1, code <= Double(levels.count) { return HDF5Source.nonMissing(levels[Int(code) - 1]) }
                if code == Double(Int32.min) { return nil }  // R's NA_integer_
                throw InputError("column '\(column.name)' in \(name): row \(rows.lowerBound + offset + 1) holds code "
                    + "\(rLevelName(code)), outside its \(levels.count) levels (codes 1 to \(levels.count))")
            }
        case .categorical(let categories):
            return try readDoubles(column, rows: rows).enumerated().map { offset, code in
                if code >= 0, code < Double(categories.count) { return HDF5Source.nonMissing(categories[Int(code)]) }
                if code == -1 { return nil }
                throw InputError("column '\(column.name)' in \(name): row \(rows.lowerBound + offset + 1) holds category "
                    + "code \(rLevelName(code)), outside its \(categories.count) categories (codes 0 to \(categories.count - 1), -1 missing)")
            }
        case .enumerated(let memoryType, let size, let signed, let names):
            let bytes = try readRaw(column, as: memoryType, size: size, rows: rows)
            return try (0..<rows.count).map { offset in
                let value = HDF5Source.integer(bytes[(offset * size)..<((offset + 1) * size)], signed: signed)
                if let name = names[value] { return HDF5Source.nonMissing(name) }
                if value == Int64(Int32.min) { return nil }  // R's NA_integer_
                throw InputError("column '\(column.name)' in \(name): row \(rows.lowerBound + offset + 1) holds \(value), "
                    + "which is not a value of its HDF5 enum (\(names.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
            }
        case .boolean:
            return try readRaw(column, as: mlm_h5t_native_b8(), size: 1, rows: rows).map { $0 == 0 ? "FALSE" : "TRUE" }
        case .decoded(let values):
            return Array(values[rows])
        case .unsupported(let hdf5Class): throw unsupported(column.name, hdf5Class)
        case .unreadable(let reason): throw InputError(reason)
        }
    }

    // MARK: Reading

    /// The column's values for `rows`, converted by HDF5 to native doubles.
    private func readDoubles(_ column: Column, rows: Range<Int>) throws -> [Double] {
        guard !rows.isEmpty else { return [] }
        var values = [Double](repeating: .nan, count: rows.count)
        try withHDF5 {
            try values.withUnsafeMutableBytes { buffer in
                try read(column, as: mlm_h5t_native_double(), rows: rows, into: buffer.baseAddress!) { _, _ in }
            }
        }
        return values
    }

    /// The column's values for `rows` as `size`-byte elements of memory type `type`.
    private func readRaw(_ column: Column, as type: hid_t, size: Int, rows: Range<Int>) throws -> [UInt8] {
        guard !rows.isEmpty else { return [] }
        var bytes = [UInt8](repeating: 0, count: rows.count * size)
        try withHDF5 {
            try bytes.withUnsafeMutableBytes { buffer in
                try read(column, as: type, rows: rows, into: buffer.baseAddress!) { _, _ in }
            }
        }
        return bytes
    }

    /// Variable-length strings for `rows`: read as `char*`, copied out, then reclaimed.
    private func readVariableStrings(_ column: Column, cset: H5T_cset_t, rows: Range<Int>) throws -> [String?] {
        guard !rows.isEmpty else { return [] }
        var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: rows.count)
        var strings: [String?] = []
        strings.reserveCapacity(rows.count)
        try withHDF5 {
            let stringType = HDF5Source.variableStringType(cset: cset)
            defer { H5Tclose(stringType) }
            try pointers.withUnsafeMutableBytes { buffer in
                try read(column, as: stringType, rows: rows, into: buffer.baseAddress!) { memoryType, memorySpace in
                    for pointer in buffer.bindMemory(to: UnsafeMutablePointer<CChar>?.self) {
                        strings.append(pointer.flatMap { HDF5Source.nonMissing(String(fileCString: $0)) })
                    }
                    H5Dvlen_reclaim(memoryType, memorySpace, mlm_h5p_default(), buffer.baseAddress!)
                }
            }
        }
        return strings
    }

    /// Fixed-length strings for `rows`, with trailing NUL and space padding removed; the
    /// text `missing` (pandas' `nan_rep`), if given, is missing too.
    private func readFixedStrings(_ column: Column, size: Int, cset: H5T_cset_t, pad: H5T_str_t, missing: [UInt8]?,
                                  rows: Range<Int>) throws -> [String?] {
        guard !rows.isEmpty else { return [] }
        var bytes = [UInt8](repeating: 0, count: rows.count * size)
        try withHDF5 {
            let stringType = HDF5Source.fixedStringType(size: size, cset: cset, pad: pad)
            defer { H5Tclose(stringType) }
            try bytes.withUnsafeMutableBytes { buffer in
                try read(column, as: stringType, rows: rows, into: buffer.baseAddress!) { _, _ in }
            }
        }
        return HDF5Source.unpaddedBytes(bytes, size: size).map { text in
            if let missing, text.elementsEqual(missing) { return nil }
            return HDF5Source.nonMissing(HDF5Source.labelText(Array(text)))
        }
    }

    /// Reads the rows `rows` of the column into `buffer` as `elementType`, then calls
    /// `finish` with the memory type and space used (to reclaim variable-length data).
    ///
    /// A member of a compound table is read through a memory compound type holding only
    /// that member; an element of an array member through a temporary buffer of whole
    /// arrays; a column of a 2-D dataset by a rows × 1 hyperslab. The caller holds the HDF5 lock.
    private func read(_ column: Column, as elementType: hid_t, rows: Range<Int>, into buffer: UnsafeMutableRawPointer,
                      finish: (_ memoryType: hid_t, _ memorySpace: hid_t) -> Void) throws {
        let failure = InputError("cannot read rows \(rows.lowerBound)..<\(rows.upperBound) of column '\(column.name)' in \(name)")
        var memoryType = elementType
        var ownedTypes: [hid_t] = []
        defer { ownedTypes.forEach { H5Tclose($0) } }
        var packed: (width: Int, index: Int)?
        switch column.location {
        case .dataset, .matrix:
            break
        case .member(let member):
            memoryType = H5Tcreate(H5T_COMPOUND, H5Tget_size(elementType))
            guard memoryType >= 0 else { throw failure }
            ownedTypes.append(memoryType)
            guard withFileCString(member, { H5Tinsert(memoryType, $0, 0, elementType) }) >= 0 else { throw failure }
        case .packed(let member, let width, let index):
            var dims = [hsize_t(width)]
            let array = H5Tarray_create2(elementType, 1, &dims)
            guard array >= 0 else { throw failure }
            ownedTypes.append(array)
            memoryType = H5Tcreate(H5T_COMPOUND, H5Tget_size(array))
            guard memoryType >= 0 else { throw failure }
            ownedTypes.append(memoryType)
            guard withFileCString(member, { H5Tinsert(memoryType, $0, 0, array) }) >= 0 else { throw failure }
            packed = (width, index)
        }
        let fileSpace = H5Dget_space(column.dataset)
        guard fileSpace >= 0 else { throw failure }
        defer { H5Sclose(fileSpace) }
        if case .matrix(let index, let transposed) = column.location {
            var start = transposed ? [hsize_t(index), hsize_t(rows.lowerBound)] : [hsize_t(rows.lowerBound), hsize_t(index)]
            var count = transposed ? [1, hsize_t(rows.count)] : [hsize_t(rows.count), 1]
            guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &count, nil) >= 0 else { throw failure }
        } else {
            var start = [hsize_t(rows.lowerBound)]
            var count = [hsize_t(rows.count)]
            guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &count, nil) >= 0 else { throw failure }
        }
        var count = [hsize_t(rows.count)]
        let memorySpace = H5Screate_simple(1, &count, nil)
        guard memorySpace >= 0 else { throw failure }
        defer { H5Sclose(memorySpace) }
        guard let packed else {
            guard H5Dread(column.dataset, memoryType, memorySpace, fileSpace, mlm_h5p_default(), buffer) >= 0 else {
                throw failure
            }
            finish(memoryType, memorySpace)
            return
        }
        // Whole arrays of `width` elements per row, then element `index` of each.
        let size = H5Tget_size(elementType)
        var arrays = [UInt8](repeating: 0, count: rows.count * packed.width * size)
        guard H5Dread(column.dataset, memoryType, memorySpace, fileSpace, mlm_h5p_default(), &arrays) >= 0 else {
            throw failure
        }
        arrays.withUnsafeBytes { source in
            for row in 0..<rows.count {
                (buffer + row * size).copyMemory(from: source.baseAddress! + (row * packed.width + packed.index) * size,
                                                 byteCount: size)
            }
        }
    }

    /// The column named `name`, or the error saying why there is none.
    private func column(_ name: String) throws -> Column {
        guard let index = indexByName[ExactString(name)] else {
            if let reason = notColumns[name] { throw InputError("'\(name)' in \(self.name) is \(reason), not a column: columns are 1-D datasets") }
            throw unknownColumn(name)
        }
        return columns[index]
    }

    /// The error for a column whose HDF5 class is neither numeric nor string.
    private func unsupported(_ column: String, _ hdf5Class: String) -> InputError {
        InputError("column '\(column)' in \(name) has HDF5 class \(hdf5Class), which is neither numeric nor string")
    }

    /// Splits fixed-length strings of `size` bytes each, dropping what follows a NUL and trailing spaces.
    static func unpaddedBytes(_ bytes: [UInt8], size: Int) -> [ArraySlice<UInt8>] {
        stride(from: 0, to: bytes.count, by: max(size, 1)).map { start in
            let text = bytes[start..<(start + size)].prefix { $0 != 0 }
            let end = text.lastIndex { $0 != UInt8(ascii: " ") }.map { $0 + 1 } ?? text.startIndex
            return text[..<end]
        }
    }

    /// Splits fixed-length strings of `size` bytes each into texts (see `unpaddedBytes`).
    static func unpadded(_ bytes: [UInt8], size: Int) -> [String] {
        unpaddedBytes(bytes, size: size).map { String(fileBytes: $0) }
    }

    /// The string, or nil for the missing-value spellings "NA" and "".
    static func nonMissing(_ text: String) -> String? {
        text.isEmpty || text == "NA" ? nil : text
    }

    /// The integer held in native (little-endian) bytes, sign-extended if `signed`.
    static func integer(_ bytes: ArraySlice<UInt8>, signed: Bool) -> Int64 {
        var value: UInt64 = 0
        for (i, byte) in bytes.enumerated() { value |= UInt64(byte) << UInt64(8 * i) }
        let bits = bytes.count * 8
        guard signed, bits < 64, value & (1 << UInt64(bits - 1)) != 0 else { return Int64(bitPattern: value) }
        return Int64(bitPattern: value | ~((1 << UInt64(bits)) - 1))
    }

    /// A new memory type for variable-length C strings (close it after use).
    static func variableStringType(cset: H5T_cset_t) -> hid_t {
        let type = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(type, mlm_h5t_variable())
        H5Tset_cset(type, cset)
        return type
    }

    /// A new memory type for fixed-length strings matching the file's (close it after use).
    static func fixedStringType(size: Int, cset: H5T_cset_t, pad: H5T_str_t) -> hid_t {
        let type = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(type, size)
        H5Tset_cset(type, cset)
        H5Tset_strpad(type, pad)
        return type
    }

    /// The text of label bytes read from a file: enum names, pandas strings and categories
    /// (one-to-one, `String(fileBytes:)`: labels are the bytes in the file).
    static func labelText(_ bytes: [UInt8]) -> String {
        String(fileBytes: bytes)
    }

    // MARK: Opening

    /// Opens the file and the table and describes the columns; the caller holds the lock.
    ///
    /// Closes everything it opened if it throws.
    private static func open(path: String, table: String?) throws -> Opened {
        mlm_h5_silence()
        let file = H5Fopen(path, mlm_h5f_acc_rdonly(), mlm_h5p_default())
        guard file >= 0 else { throw InputError("'\(path)' is not a readable HDF5 file") }
        var object: hid_t = -1
        var layout = Layout()
        do {
            let tablePath = try table.map { $0.hasPrefix("/") ? $0 : "/" + $0 } ?? defaultTable(file: file, path: path)
            object = withFileCString(tablePath) { H5Oopen(file, $0, mlm_h5p_default()) }
            guard object >= 0 else { throw InputError("no table '\(tablePath)' in '\(path)'") }
            let notTable = InputError("'\(tablePath)' in '\(path)' is not a table: "
                + "expected a group of 1-D datasets, a 1-D compound dataset or a pandas DataFrame")
            var lengths: [Int] = []
            switch H5Iget_type(object) {
            case H5I_GROUP where PandasHDF5Layout.isPandas(object):
                layout = try PandasHDF5Layout.read(group: object, description: "'\(path)':\(tablePath)")
                lengths = [layout.rowCount]
            case H5I_GROUP:
                layout = groupColumns(object, lengths: &lengths)
                guard !layout.columns.isEmpty else {
                    throw InputError("group '\(tablePath)' in '\(path)' has no 1-D datasets to read as columns")
                }
            case H5I_DATASET:
                guard shape(of: object) == .compoundTable else { throw notTable }
                layout.columns = memberColumns(object, types: &layout.types)
                lengths = [length(of: object)]
            default:
                throw notTable
            }
            if let mismatch = lengths.firstIndex(where: { $0 != lengths[0] }) {
                throw InputError("column '\(layout.columns[mismatch].name)' in '\(path)':\(tablePath) has \(lengths[mismatch]) "
                    + "rows, but column '\(layout.columns[0].name)' has \(lengths[0])")
            }
            layout.rowCount = lengths.first ?? 0
            return Opened(file: file, table: object, tablePath: tablePath, layout: layout)
        } catch {
            layout.close()
            if object >= 0 { H5Oclose(object) }
            H5Fclose(file)
            throw error
        }
    }

    /// What an object is, as far as finding tables goes.
    private enum Shape: Equatable {
        case group, columnDataset, compoundTable, other
    }

    /// The table to read when none was named (see `init`): the only one anywhere in the file.
    private static func defaultTable(file: hid_t, path: String) throws -> String {
        let root = H5Oopen(file, "/", mlm_h5p_default())
        defer { H5Oclose(root) }
        var tables: [String] = []
        findTables(in: root, path: "/", depth: 0, into: &tables)
        if tables.count == 1 { return tables[0] }
        let children = childNames(of: root)
        guard !children.isEmpty else { throw InputError("'\(path)' holds no tables: the file is empty") }
        guard !tables.isEmpty else {
            // Nothing looks like a table: name the only object so that opening it says why.
            if children.count == 1 { return "/" + children[0] }
            throw InputError("'\(path)' holds no tables (no group of 1-D datasets, 1-D compound dataset or pandas "
                + "DataFrame; objects: \(children.map { "/" + $0 }.joined(separator: ", ")))")
        }
        throw InputError("'\(path)' holds several tables (\(tables.joined(separator: ", "))): choose one with --table")
    }

    /// Appends the tables in `group` and below: the group itself if it holds 1-D column
    /// datasets, its compound datasets, and its subgroups' tables; a pandas group is one table.
    private static func findTables(in group: hid_t, path: String, depth: Int, into tables: inout [String]) {
        if PandasHDF5Layout.isPandas(group) {
            tables.append(path)
            return
        }
        let prefix = path == "/" ? "/" : path + "/"
        var found: [String] = []
        var hasColumns = false
        for child in childNames(of: group) {
            let object = withFileCString(child) { H5Oopen(group, $0, mlm_h5p_default()) }
            guard object >= 0 else { continue }
            defer { H5Oclose(object) }
            switch shape(of: object) {
            case .group where depth < 32: findTables(in: object, path: prefix + child, depth: depth + 1, into: &found)
            case .compoundTable: found.append(prefix + child)
            case .columnDataset: hasColumns = true
            default: break
            }
        }
        if hasColumns { tables.append(path) }
        tables += found
    }

    /// Whether an open object is a group, a 1-D dataset of one column, a 1-D compound table, or neither.
    private static func shape(of object: hid_t) -> Shape {
        switch H5Iget_type(object) {
        case H5I_GROUP: return .group
        case H5I_DATASET:
            let space = H5Dget_space(object)
            defer { H5Sclose(space) }
            guard H5Sget_simple_extent_type(space) == H5S_SIMPLE, H5Sget_simple_extent_ndims(space) == 1 else { return .other }
            let type = H5Dget_type(object)
            defer { H5Tclose(type) }
            return H5Tget_class(type) == H5T_COMPOUND ? .compoundTable : .columnDataset
        default: return .other
        }
    }

    /// Why an open object that is not a 1-D dataset is not a column, e.g. "a 2-D dataset (3 × 4)".
    private static func notColumnReason(_ object: hid_t) -> String {
        guard H5Iget_type(object) == H5I_DATASET else { return "a group" }
        let space = H5Dget_space(object)
        defer { H5Sclose(space) }
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR: return "a scalar dataset"
        case H5S_NULL: return "an empty (null-dataspace) dataset"
        default:
            let rank = Int(H5Sget_simple_extent_ndims(space))
            var dims = [hsize_t](repeating: 0, count: max(rank, 1))
            H5Sget_simple_extent_dims(space, &dims, nil)
            return "a \(rank)-D dataset (\(dims.prefix(rank).map(String.init).joined(separator: " × ")))"
        }
    }

    /// The length of a 1-D dataset (or the first dimension of any).
    static func length(of dataset: hid_t) -> Int {
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        var dims: [hsize_t] = [0, 0, 0, 0, 0, 0, 0, 0]
        guard H5Sget_simple_extent_ndims(space) <= 8 else { return 0 }
        H5Sget_simple_extent_dims(space, &dims, nil)
        return Int(dims[0])
    }

    /// The names of a group's links, in creation order if the group indexes it, else by name.
    static func childNames(of group: hid_t) -> [String] {
        var info = H5G_info_t()
        guard H5Gget_info(group, &info) >= 0 else { return [] }
        var flags: UInt32 = 0
        let creation = H5Gget_create_plist(group)
        H5Pget_link_creation_order(creation, &flags)
        H5Pclose(creation)
        let order = flags & UInt32(H5P_CRT_ORDER_INDEXED) != 0 ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME
        return (0..<info.nlinks).compactMap { index in
            let length = H5Lget_name_by_idx(group, ".", order, H5_ITER_INC, index, nil, 0, mlm_h5p_default())
            guard length >= 0 else { return nil }
            var name = [CChar](repeating: 0, count: length + 1)
            H5Lget_name_by_idx(group, ".", order, H5_ITER_INC, index, &name, length + 1, mlm_h5p_default())
            return String(fileCString: name)
        }
    }

    /// The 1-D datasets of a group, left open, with their lengths in `lengths`; the other
    /// children are noted with the reason they are not columns.
    private static func groupColumns(_ group: hid_t, lengths: inout [Int]) -> Layout {
        var layout = Layout()
        for child in childNames(of: group) {
            let object = withFileCString(child) { H5Oopen(group, $0, mlm_h5p_default()) }
            guard object >= 0 else {
                layout.notColumns[child] = "a link to an object that does not exist (a dangling soft or external link)"
                continue
            }
            let shape = shape(of: object)
            guard shape == .columnDataset || shape == .compoundTable else {
                layout.notColumns[child] = notColumnReason(object)
                H5Oclose(object)
                continue
            }
            let type = H5Dget_type(object)
            defer { H5Tclose(type) }
            layout.datasets.append(object)
            layout.columns.append(Column(name: child, dataset: object, location: .dataset,
                                         kind: kind(of: type, dataset: object, types: &layout.types)))
            lengths.append(length(of: object))
        }
        return layout
    }

    /// The members of a compound table as columns.
    private static func memberColumns(_ dataset: hid_t, types: inout [hid_t]) -> [Column] {
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        return (0..<UInt32(max(0, H5Tget_nmembers(type)))).map { index in
            let namePointer = H5Tget_member_name(type, index)!
            defer { H5free_memory(namePointer) }
            let memberType = H5Tget_member_type(type, index)
            defer { H5Tclose(memberType) }
            let name = String(fileCString: namePointer)
            return Column(name: name, dataset: dataset, location: .member(name),
                          kind: kind(of: memberType, dataset: nil, types: &types))
        }
    }

    /// How to read values of HDF5 type `type`; `dataset` is where a `levels` attribute may be.
    /// Types the kind needs open (an enum's memory type) are appended to `types`.
    static func kind(of type: hid_t, dataset: hid_t?, types: inout [hid_t]) -> Kind {
        let typeClass = H5Tget_class(type)
        switch typeClass {
        case H5T_INTEGER:
            if let dataset, let levels = levels(of: dataset) { return .coded(levels: levels) }
            return .numeric
        case H5T_FLOAT:
            return .numeric
        case H5T_STRING:
            if H5Tis_variable_str(type) > 0 { return .variableString(cset: H5Tget_cset(type)) }
            return .fixedString(size: H5Tget_size(type), cset: H5Tget_cset(type), pad: H5Tget_strpad(type), missing: nil)
        case H5T_ENUM:
            return enumeration(type, types: &types)
        case H5T_BITFIELD where H5Tget_size(type) == 1:
            return .boolean
        default:
            return .unsupported(hdf5Class: className(typeClass))
        }
    }

    /// An enum's values and member names, read through its native type (kept open in `types`).
    private static func enumeration(_ type: hid_t, types: inout [hid_t]) -> Kind {
        let native = H5Tget_native_type(type, H5T_DIR_ASCEND)
        guard native >= 0 else { return .unsupported(hdf5Class: "enum") }
        types.append(native)
        let base = H5Tget_super(native)
        let signed = H5Tget_sign(base) == H5T_SGN_2
        H5Tclose(base)
        let size = H5Tget_size(native)
        guard size <= 8 else { return .unsupported(hdf5Class: "enum") }
        var names: [Int64: String] = [:]
        for index in 0..<UInt32(max(0, H5Tget_nmembers(native))) {
            guard let pointer = H5Tget_member_name(native, index) else { continue }
            let bytes = Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
            H5free_memory(pointer)
            var value = [UInt8](repeating: 0, count: size)
            guard H5Tget_member_value(native, index, &value) >= 0 else { continue }
            names[integer(value[...], signed: signed)] = labelText(bytes)
        }
        return .enumerated(memoryType: native, size: size, signed: signed, names: names)
    }

    /// The strings of a dataset's `levels` attribute, or nil if it has no string-array one.
    private static func levels(of dataset: hid_t) -> [String]? {
        guard H5Aexists(dataset, "levels") > 0 else { return nil }
        let attribute = H5Aopen(dataset, "levels", mlm_h5p_default())
        guard attribute >= 0 else { return nil }
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        let space = H5Aget_space(attribute)
        defer { H5Sclose(space) }
        let count = Int(max(0, H5Sget_simple_extent_npoints(space)))
        guard H5Tget_class(type) == H5T_STRING else { return nil }
        if H5Tis_variable_str(type) > 0 {
            let memoryType = variableStringType(cset: H5Tget_cset(type))
            defer { H5Tclose(memoryType) }
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            guard H5Aread(attribute, memoryType, &pointers) >= 0 else { return nil }
            let levels = pointers.map { $0.map { String(fileCString: $0) } ?? "" }
            H5Dvlen_reclaim(memoryType, space, mlm_h5p_default(), &pointers)
            return levels
        }
        let size = H5Tget_size(type)
        let memoryType = fixedStringType(size: size, cset: H5Tget_cset(type), pad: H5Tget_strpad(type))
        defer { H5Tclose(memoryType) }
        var bytes = [UInt8](repeating: 0, count: count * size)
        guard H5Aread(attribute, memoryType, &bytes) >= 0 else { return nil }
        return unpadded(bytes, size: size)
    }

    /// A readable name for an HDF5 type class.
    static func className(_ typeClass: H5T_class_t) -> String {
        switch typeClass {
        case H5T_TIME: return "time"
        case H5T_BITFIELD: return "bitfield"
        case H5T_OPAQUE: return "opaque"
        case H5T_COMPOUND: return "compound"
        case H5T_REFERENCE: return "reference"
        case H5T_ENUM: return "enum"
        case H5T_VLEN: return "variable-length sequence"
        case H5T_ARRAY: return "array"
        default: return "unknown (\(typeClass.rawValue))"
        }
    }
}

