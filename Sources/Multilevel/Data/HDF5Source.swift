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
/// Two layouts are tables:
/// - a group whose 1-D datasets are the columns (what h5py, rhdf5 and hdf5r write;
///   subgroups and datasets of other ranks are skipped), in creation order if the group
///   indexes it, else in name order;
/// - a 1-D compound dataset whose members are the columns.
///
/// Integer and floating-point columns of any width are `.numeric` (HDF5 converts them to
/// double on read). Fixed- and variable-length strings are `.string`, with the padding of
/// fixed-length strings stripped. An integer column with a string-array attribute `levels`
/// is `.string` too: code k maps to `levels[k-1]` (R's convention) and a code outside
/// `1...levels.count` is missing. Other HDF5 classes are reported when such a column is used.
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

    /// How one column is stored, as far as reading it goes.
    private enum Kind {
        case numeric
        case variableString(cset: H5T_cset_t)
        case fixedString(size: Int, cset: H5T_cset_t, pad: H5T_str_t)
        case coded(levels: [String])
        case unsupported(hdf5Class: String)
    }

    /// A column: its own dataset (group layout) or a member of the table's dataset.
    private struct Column {
        let name: String
        let dataset: hid_t
        let isMember: Bool
        let kind: Kind
    }

    /// The objects a successful open leaves for the instance to keep.
    private struct Opened {
        let file: hid_t
        let table: hid_t
        let tablePath: String
        let columns: [Column]
        let rowCount: Int
    }

    /// Opens `path` read-only and finds the table `table` in it.
    ///
    /// `table` is a path in the file ("data", "/data", "/grp/table"). When nil, the root's
    /// only child is the table; failing that, the root itself if all its children are
    /// 1-D column datasets; otherwise this throws, listing the candidates.
    /// Throws `InputError` (one line) if the file is missing or not HDF5, the table is
    /// not found or is not a table, or the columns differ in length.
    public init(path: String, table: String?) throws {
        try requireReadableFile(path)
        let opened = try withHDF5 { try HDF5Source.open(path: path, table: table) }
        file = opened.file
        self.table = opened.table
        columns = opened.columns
        rowCount = opened.rowCount
        name = "\(path):\(opened.tablePath)"
        columnNames = opened.columns.map(\.name)
        indexByName = Dictionary(opened.columns.enumerated().map { (ExactString($1.name), $0) }) { first, _ in first }
    }

    deinit {
        withHDF5 {
            for column in columns where !column.isMember { H5Dclose(column.dataset) }
            H5Oclose(table)
            H5Fclose(file)
        }
    }

    public func columnType(_ column: String) throws -> ColumnType {
        let column = try self.column(column)
        switch column.kind {
        case .numeric: return .numeric
        case .variableString, .fixedString, .coded: return .string
        case .unsupported(let hdf5Class): throw unsupported(column.name, hdf5Class)
        }
    }

    public func readNumeric(_ column: String, rows: Range<Int>) throws -> [Double] {
        let column = try self.column(column)
        try checkRows(rows, column: column.name)
        switch column.kind {
        case .numeric: return try readDoubles(column, rows: rows)
        case .variableString, .fixedString, .coded:
            throw InputError("column '\(column.name)' in \(name) holds strings, not numbers")
        case .unsupported(let hdf5Class): throw unsupported(column.name, hdf5Class)
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
        case .fixedString(let size, let cset, let pad):
            return try readFixedStrings(column, size: size, cset: cset, pad: pad, rows: rows)
        case .coded(let levels):
            return try readDoubles(column, rows: rows).map { code in
                code >= 1 && code <= Double(levels.count) ? levels[Int(code) - 1] : nil
            }
        case .unsupported(let hdf5Class): throw unsupported(column.name, hdf5Class)
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

    /// Fixed-length strings for `rows`, with trailing NUL and space padding removed.
    private func readFixedStrings(_ column: Column, size: Int, cset: H5T_cset_t, pad: H5T_str_t,
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
        return HDF5Source.unpadded(bytes, size: size).map(HDF5Source.nonMissing)
    }

    /// Reads the hyperslab `rows` of the column into `buffer` as `elementType`, then calls
    /// `finish` with the memory type and space used (to reclaim variable-length data).
    ///
    /// A member of a compound table is read through a memory compound type holding only
    /// that member. The caller holds the HDF5 lock.
    private func read(_ column: Column, as elementType: hid_t, rows: Range<Int>, into buffer: UnsafeMutableRawPointer,
                      finish: (_ memoryType: hid_t, _ memorySpace: hid_t) -> Void) throws {
        let failure = InputError("cannot read rows \(rows.lowerBound)..<\(rows.upperBound) of column '\(column.name)' in \(name)")
        var memoryType = elementType
        if column.isMember {
            memoryType = H5Tcreate(H5T_COMPOUND, H5Tget_size(elementType))
            guard memoryType >= 0 else { throw failure }
            guard withFileCString(column.name, { H5Tinsert(memoryType, $0, 0, elementType) }) >= 0 else {
                H5Tclose(memoryType)
                throw failure
            }
        }
        defer { if column.isMember { H5Tclose(memoryType) } }
        let fileSpace = H5Dget_space(column.dataset)
        guard fileSpace >= 0 else { throw failure }
        defer { H5Sclose(fileSpace) }
        var start = [hsize_t(rows.lowerBound)]
        var count = [hsize_t(rows.count)]
        guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &count, nil) >= 0 else { throw failure }
        let memorySpace = H5Screate_simple(1, &count, nil)
        guard memorySpace >= 0 else { throw failure }
        defer { H5Sclose(memorySpace) }
        guard H5Dread(column.dataset, memoryType, memorySpace, fileSpace, mlm_h5p_default(), buffer) >= 0 else {
            throw failure
        }
        finish(memoryType, memorySpace)
    }

    /// The column named `name`, or the error listing the columns there are.
    private func column(_ name: String) throws -> Column {
        guard let index = indexByName[ExactString(name)] else { throw unknownColumn(name) }
        return columns[index]
    }

    /// The error for a column whose HDF5 class is neither numeric nor string.
    private func unsupported(_ column: String, _ hdf5Class: String) -> InputError {
        InputError("column '\(column)' in \(name) has HDF5 class \(hdf5Class), which is neither numeric nor string")
    }

    /// Splits fixed-length strings of `size` bytes each, dropping what follows a NUL and trailing spaces.
    private static func unpadded(_ bytes: [UInt8], size: Int) -> [String] {
        stride(from: 0, to: bytes.count, by: max(size, 1)).map { start in
            let text = bytes[start..<(start + size)].prefix { $0 != 0 }
            let end = text.lastIndex { $0 != UInt8(ascii: " ") }.map { $0 + 1 } ?? text.startIndex
            return String(fileBytes: text[..<end])
        }
    }

    /// The string, or nil for the missing-value spellings "NA" and "".
    private static func nonMissing(_ text: String) -> String? {
        text.isEmpty || text == "NA" ? nil : text
    }

    /// A new memory type for variable-length C strings (close it after use).
    static func variableStringType(cset: H5T_cset_t) -> hid_t {
        let type = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(type, mlm_h5t_variable())
        H5Tset_cset(type, cset)
        return type
    }

    /// A new memory type for fixed-length strings matching the file's (close it after use).
    private static func fixedStringType(size: Int, cset: H5T_cset_t, pad: H5T_str_t) -> hid_t {
        let type = H5Tcopy(mlm_h5t_c_s1())
        H5Tset_size(type, size)
        H5Tset_cset(type, cset)
        H5Tset_strpad(type, pad)
        return type
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
        var columns: [Column] = []
        do {
            let tablePath = try table.map { $0.hasPrefix("/") ? $0 : "/" + $0 } ?? defaultTable(file: file, path: path)
            object = H5Oopen(file, tablePath, mlm_h5p_default())
            guard object >= 0 else { throw InputError("no table '\(tablePath)' in '\(path)'") }
            let notTable = InputError("'\(tablePath)' in '\(path)' is not a table: "
                + "expected a group of 1-D datasets or a 1-D compound dataset")
            var lengths: [Int] = []
            switch H5Iget_type(object) {
            case H5I_GROUP:
                columns = try groupColumns(object, lengths: &lengths)
                guard !columns.isEmpty else {
                    throw InputError("group '\(tablePath)' in '\(path)' has no 1-D datasets to read as columns")
                }
            case H5I_DATASET:
                guard shape(of: object) == .compoundTable else { throw notTable }
                columns = memberColumns(object)
                lengths = [length(of: object)]
            default:
                throw notTable
            }
            if let mismatch = lengths.firstIndex(where: { $0 != lengths[0] }) {
                throw InputError("column '\(columns[mismatch].name)' in '\(path)':\(tablePath) has \(lengths[mismatch]) "
                    + "rows, but column '\(columns[0].name)' has \(lengths[0])")
            }
            return Opened(file: file, table: object, tablePath: tablePath, columns: columns, rowCount: lengths[0])
        } catch {
            for column in columns where !column.isMember { H5Dclose(column.dataset) }
            if object >= 0 { H5Oclose(object) }
            H5Fclose(file)
            throw error
        }
    }

    /// What an object is, as far as finding tables goes.
    private enum Shape: Equatable {
        case group, columnDataset, compoundTable, other
    }

    /// The table to read when none was named (see `init`).
    private static func defaultTable(file: hid_t, path: String) throws -> String {
        let root = H5Oopen(file, "/", mlm_h5p_default())
        defer { H5Oclose(root) }
        let children = childNames(of: root)
        let shapes = children.map { child -> Shape in
            let object = withFileCString(child) { H5Oopen(root, $0, mlm_h5p_default()) }
            guard object >= 0 else { return .other }
            defer { H5Oclose(object) }
            return shape(of: object)
        }
        if !shapes.isEmpty, shapes.allSatisfy({ $0 == .columnDataset }) { return "/" }
        if children.count == 1 { return "/" + children[0] }
        guard !children.isEmpty else { throw InputError("'\(path)' holds no tables: the file is empty") }
        let tables = zip(children, shapes).filter { $1 == .group || $1 == .compoundTable }.map { "/" + $0.0 }
        let candidates = tables.isEmpty ? children.map { "/" + $0 } : tables
        throw InputError("'\(path)' holds several tables (\(candidates.joined(separator: ", "))): choose one with --table")
    }

    /// Whether an open object is a group, a 1-D dataset of one column, a 1-D compound table, or neither.
    private static func shape(of object: hid_t) -> Shape {
        switch H5Iget_type(object) {
        case H5I_GROUP: return .group
        case H5I_DATASET:
            let space = H5Dget_space(object)
            defer { H5Sclose(space) }
            guard H5Sget_simple_extent_ndims(space) == 1 else { return .other }
            let type = H5Dget_type(object)
            defer { H5Tclose(type) }
            return H5Tget_class(type) == H5T_COMPOUND ? .compoundTable : .columnDataset
        default: return .other
        }
    }

    /// The length of a 1-D dataset.
    private static func length(of dataset: hid_t) -> Int {
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        var dims: [hsize_t] = [0]
        H5Sget_simple_extent_dims(space, &dims, nil)
        return Int(dims[0])
    }

    /// The names of a group's links, in creation order if the group indexes it, else by name.
    private static func childNames(of group: hid_t) -> [String] {
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

    /// The 1-D datasets of a group, left open, with their lengths in `lengths`.
    private static func groupColumns(_ group: hid_t, lengths: inout [Int]) throws -> [Column] {
        var columns: [Column] = []
        for child in childNames(of: group) {
            let object = withFileCString(child) { H5Oopen(group, $0, mlm_h5p_default()) }
            guard object >= 0 else { continue }
            let shape = shape(of: object)
            guard shape == .columnDataset || shape == .compoundTable else {
                H5Oclose(object)
                continue
            }
            let type = H5Dget_type(object)
            defer { H5Tclose(type) }
            columns.append(Column(name: child, dataset: object, isMember: false, kind: kind(of: type, dataset: object)))
            lengths.append(length(of: object))
        }
        return columns
    }

    /// The members of a compound table as columns.
    private static func memberColumns(_ dataset: hid_t) -> [Column] {
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        return (0..<UInt32(max(0, H5Tget_nmembers(type)))).map { index in
            let namePointer = H5Tget_member_name(type, index)!
            defer { H5free_memory(namePointer) }
            let memberType = H5Tget_member_type(type, index)
            defer { H5Tclose(memberType) }
            return Column(name: String(fileCString: namePointer), dataset: dataset, isMember: true,
                          kind: kind(of: memberType, dataset: nil))
        }
    }

    /// How to read values of HDF5 type `type`; `dataset` is where a `levels` attribute may be.
    private static func kind(of type: hid_t, dataset: hid_t?) -> Kind {
        let typeClass = H5Tget_class(type)
        switch typeClass {
        case H5T_INTEGER:
            if let dataset, let levels = levels(of: dataset) { return .coded(levels: levels) }
            return .numeric
        case H5T_FLOAT:
            return .numeric
        case H5T_STRING:
            if H5Tis_variable_str(type) > 0 { return .variableString(cset: H5Tget_cset(type)) }
            return .fixedString(size: H5Tget_size(type), cset: H5Tget_cset(type), pad: H5Tget_strpad(type))
        default:
            return .unsupported(hdf5Class: className(typeClass))
        }
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
    private static func className(_ typeClass: H5T_class_t) -> String {
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
