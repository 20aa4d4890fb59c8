import CHDF5
import Foundation

/// Writes a table to a new HDF5 file as a group of 1-D column datasets, in chunks of rows.
///
/// The layout is the one `HDF5Source` reads (and h5py, rhdf5 and hdf5r write): each column
/// is a chunked dataset with unlimited maximum length that every `append` extends, so a
/// table of any size is written with memory bounded by the chunk the caller builds.
/// Numbers are stored as little-endian doubles, integers as little-endian 64-bit integers,
/// strings as variable-length UTF-8 C strings (nil as "NA"). The group tracks creation
/// order, so the columns read back in the order given.
///
/// ```swift
/// let writer = try HDF5TableWriter(path: "sim.h5", group: "data",
///                                  columns: [.numeric("y"), .string("school")])
/// try writer.append(numeric: ["y": [0.5, 1.5]], strings: ["school": ["a", nil]])
/// try writer.setAttribute("seed", 42)
/// try writer.close()
/// ```
public final class HDF5TableWriter {
    /// A column to write, by storage type and name.
    public enum Column: Equatable, Sendable {
        /// Doubles (NaN for missing).
        case numeric(String)
        /// 64-bit integers, e.g. codes described by `setLevels(_:forColumn:)`.
        case integer(String)
        /// Variable-length strings (nil for missing, written as "NA").
        case string(String)

        /// The column's name.
        public var name: String {
            switch self {
            case .numeric(let name), .integer(let name), .string(let name): return name
            }
        }

        /// The storage type, for messages.
        var typeName: String {
            switch self {
            case .numeric: return "numeric"
            case .integer: return "integer"
            case .string: return "string"
            }
        }
    }

    /// The file being written.
    public let path: String
    /// The group holding the columns, as a path in the file.
    public let group: String
    /// The columns, in file order.
    public let columns: [Column]
    /// The number of rows appended so far.
    public private(set) var rowCount = 0

    private var file: hid_t
    private var groupID: hid_t
    private var datasets: [hid_t]
    private var isOpen = true

    /// Creates (or truncates) the file at `path` with empty columns in `group`.
    ///
    /// `group` may be nested ("sims/run1"; intermediate groups are created) or "/" for the
    /// root. `chunkRows` is the HDF5 chunk length of every dataset. Throws `InputError`
    /// if the names are empty or repeated or the file cannot be created.
    public init(path: String, group: String, columns: [Column], chunkRows: Int = 65536) throws {
        var seen = Set<String>()
        for column in columns {
            guard !column.name.isEmpty, seen.insert(column.name).inserted else {
                throw InputError("cannot write '\(path)': column name '\(column.name)' is empty or repeated")
            }
        }
        guard chunkRows > 0 else { throw InputError("cannot write '\(path)': chunkRows must be positive") }
        self.path = path
        self.group = group
        self.columns = columns
        (file, groupID, datasets) = try withHDF5 {
            try HDF5TableWriter.create(path: path, group: group, columns: columns, chunkRows: chunkRows)
        }
    }

    deinit {
        if isOpen { try? close() }
    }

    /// Appends the same number of rows to every column.
    ///
    /// Each column's values come from the dictionary for its type, keyed by name; every
    /// column must be given and all arrays must have the same length. Nil strings are
    /// written as "NA".
    public func append(numeric: [String: [Double]] = [:], integer: [String: [Int64]] = [:],
                       strings: [String: [String?]] = [:]) throws {
        try append(numeric: numeric, integer: integer, strings: strings, count: { $0.count }) { values, body in
            try HDF5TableWriter.withCStrings(values.map { ($0 ?? "NA").fileBytes }, body)
        }
    }

    /// Appends rows as `append(numeric:integer:strings:)` does, with strings given as their
    /// bytes (written unchanged; nil as "NA").
    func append(numeric: [String: [Double]] = [:], stringBytes: [String: [ArraySlice<UInt8>?]]) throws {
        try append(numeric: numeric, integer: [:], strings: stringBytes, count: { $0.count }) { values, body in
            try HDF5TableWriter.withCStrings(values.map { $0 ?? ArraySlice("NA".utf8) }, body)
        }
    }

    /// The shared body of the appends: checks the columns and lengths, then writes each
    /// column, string columns through `cStrings` (which passes their C string pointers on).
    private func append<S>(numeric: [String: [Double]], integer: [String: [Int64]], strings: [String: S],
                           count: (S) -> Int,
                           cStrings: (S, (UnsafeRawPointer) throws -> Void) throws -> Void) throws {
        try requireOpen()
        var counts: [Int] = []
        for column in columns {
            let rows: Int?
            switch column {
            case .numeric(let name): rows = numeric[name]?.count
            case .integer(let name): rows = integer[name]?.count
            case .string(let name): rows = strings[name].map(count)
            }
            guard let rows else { throw InputError("appending to '\(path)': no values for column '\(column.name)'") }
            counts.append(rows)
        }
        let given = numeric.keys.map(Column.numeric) + integer.keys.map(Column.integer) + strings.keys.map(Column.string)
        if let extra = given.first(where: { !columns.contains($0) }) {
            throw InputError("appending to '\(path)': no \(extra.typeName) column '\(extra.name)'")
        }
        guard let rows = counts.first, rows > 0 else { return }
        if let mismatch = counts.firstIndex(where: { $0 != rows }) {
            throw InputError("appending to '\(path)': column '\(columns[mismatch].name)' has \(counts[mismatch]) "
                + "values, column '\(columns[0].name)' has \(rows)")
        }
        try withHDF5 {
            for (column, dataset) in zip(columns, datasets) {
                switch column {
                case .numeric(let name):
                    try numeric[name]!.withUnsafeBytes { values in
                        try write(values.baseAddress!, type: mlm_h5t_native_double(), rows: rows, to: dataset, column: name)
                    }
                case .integer(let name):
                    try integer[name]!.withUnsafeBytes { values in
                        try write(values.baseAddress!, type: mlm_h5t_native_int64(), rows: rows, to: dataset, column: name)
                    }
                case .string(let name):
                    try cStrings(strings[name]!) { pointers in
                        let type = HDF5Source.variableStringType(cset: H5T_CSET_UTF8)
                        defer { H5Tclose(type) }
                        try write(pointers, type: type, rows: rows, to: dataset, column: name)
                    }
                }
            }
        }
        rowCount += rows
    }

    /// Sets a numeric attribute on the group (replacing one of the same name).
    public func setAttribute(_ name: String, _ value: Double) throws {
        try requireOpen()
        var value = value
        try withHDF5 {
            try writeAttribute(name, on: groupID, type: mlm_h5t_ieee_f64le(), memoryType: mlm_h5t_native_double(),
                               count: nil, values: &value)
        }
    }

    /// Sets a string attribute on the group (replacing one of the same name).
    public func setAttribute(_ name: String, _ value: String) throws {
        try requireOpen()
        try withHDF5 {
            try HDF5TableWriter.withCStrings([value.fileBytes]) { pointers in
                let type = HDF5Source.variableStringType(cset: H5T_CSET_UTF8)
                defer { H5Tclose(type) }
                try writeAttribute(name, on: groupID, type: type, memoryType: type, count: nil, values: pointers)
            }
        }
    }

    /// Describes an integer column as codes of a categorical variable: code k is `levels[k-1]`.
    ///
    /// Writes the string-array attribute `levels` on the column's dataset (R's convention,
    /// which `HDF5Source` reads back as a `.string` column).
    public func setLevels(_ levels: [String], forColumn column: String) throws {
        try requireOpen()
        guard let index = columns.firstIndex(of: .integer(column)) else {
            throw InputError("cannot set levels in '\(path)': no integer column '\(column)'")
        }
        try withHDF5 {
            try HDF5TableWriter.withCStrings(levels.map(\.fileBytes)) { pointers in
                let type = HDF5Source.variableStringType(cset: H5T_CSET_UTF8)
                defer { H5Tclose(type) }
                try writeAttribute("levels", on: datasets[index], type: type, memoryType: type,
                                   count: levels.count, values: pointers)
            }
        }
    }

    /// Closes the datasets, the group and the file, which flushes everything to disk.
    ///
    /// Further calls to the writer throw; closing twice does nothing.
    public func close() throws {
        guard isOpen else { return }
        isOpen = false
        let failed = withHDF5 { () -> Bool in
            var failed = false
            for dataset in datasets { failed = H5Dclose(dataset) < 0 || failed }
            failed = H5Gclose(groupID) < 0 || failed
            return H5Fclose(file) < 0 || failed
        }
        if failed { throw InputError("cannot finish writing HDF5 file '\(path)'") }
    }

    // MARK: Writing

    /// Throws if `close()` has been called.
    private func requireOpen() throws {
        guard isOpen else { throw InputError("HDF5 file '\(path)' was already closed for writing") }
    }

    /// Extends `dataset` by `rows` and writes `values` (of memory type `type`) there; the caller holds the lock.
    private func write(_ values: UnsafeRawPointer, type: hid_t, rows: Int, to dataset: hid_t, column: String) throws {
        let failure = InputError("cannot write column '\(column)' to '\(path)'")
        var size = [hsize_t(rowCount + rows)]
        guard H5Dset_extent(dataset, &size) >= 0 else { throw failure }
        let fileSpace = H5Dget_space(dataset)
        guard fileSpace >= 0 else { throw failure }
        defer { H5Sclose(fileSpace) }
        var start = [hsize_t(rowCount)]
        var count = [hsize_t(rows)]
        guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &count, nil) >= 0 else { throw failure }
        let memorySpace = H5Screate_simple(1, &count, nil)
        guard memorySpace >= 0 else { throw failure }
        defer { H5Sclose(memorySpace) }
        guard H5Dwrite(dataset, type, memorySpace, fileSpace, mlm_h5p_default(), values) >= 0 else { throw failure }
    }

    /// Writes attribute `name` on `object`: a scalar if `count` is nil, else a 1-D array; the caller holds the lock.
    private func writeAttribute(_ name: String, on object: hid_t, type: hid_t, memoryType: hid_t, count: Int?,
                                values: UnsafeRawPointer) throws {
        let failure = InputError("cannot write attribute '\(name)' to '\(path)'")
        if H5Aexists(object, name) > 0, H5Adelete(object, name) < 0 { throw failure }
        var dims = [hsize_t(count ?? 1)]
        let space = count == nil ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
        guard space >= 0 else { throw failure }
        defer { H5Sclose(space) }
        let attribute = H5Acreate2(object, name, type, space, mlm_h5p_default(), mlm_h5p_default())
        guard attribute >= 0 else { throw failure }
        defer { H5Aclose(attribute) }
        guard H5Awrite(attribute, memoryType, values) >= 0 else { throw failure }
    }

    /// Calls `body` with an array of C string pointers to `strings` (their bytes), valid only during the call.
    ///
    /// The texts are packed, NUL-terminated, into one buffer rather than allocated one by one.
    private static func withCStrings<C: Collection, T>(_ strings: [C], _ body: (UnsafeRawPointer) throws -> T) rethrows -> T
        where C.Element == UInt8 {
        var storage: [CChar] = []
        storage.reserveCapacity(strings.reduce(0) { $0 + $1.count + 1 })
        var offsets: [Int] = []
        offsets.reserveCapacity(strings.count)
        for string in strings {
            offsets.append(storage.count)
            storage.append(contentsOf: string.lazy.map { CChar(bitPattern: $0) })
            storage.append(0)
        }
        return try storage.withUnsafeBufferPointer { buffer in
            let pointers = offsets.map { buffer.baseAddress! + $0 }
            return try pointers.withUnsafeBytes { try body($0.baseAddress!) }
        }
    }

    /// Creates the file, the group and the empty datasets; the caller holds the lock.
    ///
    /// Closes everything it created if it throws.
    private static func create(path: String, group: String, columns: [Column],
                               chunkRows: Int) throws -> (hid_t, hid_t, [hid_t]) {
        mlm_h5_silence()
        let file = H5Fcreate(path, mlm_h5f_acc_trunc(), mlm_h5p_default(), mlm_h5p_default())
        guard file >= 0 else { throw InputError("cannot create HDF5 file '\(path)'") }
        var groupID: hid_t = -1
        var datasets: [hid_t] = []
        do {
            groupID = createGroup(group, in: file)
            guard groupID >= 0 else { throw InputError("cannot create group '\(group)' in '\(path)'") }
            for column in columns {
                let dataset = createDataset(column, in: groupID, chunkRows: chunkRows)
                guard dataset >= 0 else { throw InputError("cannot create column '\(column.name)' in '\(path)'") }
                datasets.append(dataset)
            }
            return (file, groupID, datasets)
        } catch {
            for dataset in datasets { H5Dclose(dataset) }
            if groupID >= 0 { H5Gclose(groupID) }
            H5Fclose(file)
            throw error
        }
    }

    /// Opens the root for "/" or "", else creates the group (and intermediate ones), tracking creation order.
    private static func createGroup(_ group: String, in file: hid_t) -> hid_t {
        let trimmed = group.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard !trimmed.isEmpty else { return H5Gopen2(file, "/", mlm_h5p_default()) }
        let linkCreation = H5Pcreate(mlm_h5p_link_create())
        defer { H5Pclose(linkCreation) }
        H5Pset_create_intermediate_group(linkCreation, 1)
        let groupCreation = H5Pcreate(mlm_h5p_group_create())
        defer { H5Pclose(groupCreation) }
        H5Pset_link_creation_order(groupCreation, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED))
        return H5Gcreate2(file, trimmed, linkCreation, groupCreation, mlm_h5p_default())
    }

    /// Creates an empty, chunked, extendable 1-D dataset for `column`.
    private static func createDataset(_ column: Column, in group: hid_t, chunkRows: Int) -> hid_t {
        var size: [hsize_t] = [0]
        var maxSize = [mlm_h5s_unlimited()]
        let space = H5Screate_simple(1, &size, &maxSize)
        defer { H5Sclose(space) }
        let creation = H5Pcreate(mlm_h5p_dataset_create())
        defer { H5Pclose(creation) }
        var chunk = [hsize_t(chunkRows)]
        H5Pset_chunk(creation, 1, &chunk)
        let type: hid_t
        switch column {
        case .numeric: type = H5Tcopy(mlm_h5t_ieee_f64le())
        case .integer: type = H5Tcopy(mlm_h5t_std_i64le())
        case .string: type = HDF5Source.variableStringType(cset: H5T_CSET_UTF8)
        }
        defer { H5Tclose(type) }
        return withFileCString(column.name) { H5Dcreate2(group, $0, type, space, mlm_h5p_default(), creation, mlm_h5p_default()) }
    }
}
