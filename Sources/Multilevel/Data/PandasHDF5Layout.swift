import CHDF5
import Foundation

/// The HDF5 layouts pandas' `DataFrame.to_hdf(path, key)` writes (through PyTables), read as tables.
///
/// The DataFrame is the group named by the key (`/df`), marked by the attribute `pandas_type`:
/// - `format="table"` (`frame_table`): a compound dataset `table` of rows. Its member `index` is
///   the DataFrame's index (not a column); every other member `M` is one column (a `data_columns`
///   column) or an array member packing several columns of one dtype (`values_block_N`), whose
///   names are the attribute `M_kind`. Strings are fixed-length bytes, missing ones the text of
///   `M_nan_rep` ("nan"); booleans 8-bit bitfields; a categorical (`M_meta` = "category") holds
///   integer codes (−1 missing) of the categories stored in `meta/M/meta/table`. The group's
///   `non_index_axes` gives the DataFrame's column order.
/// - `format="fixed"` (`frame`): `axis0` (the column names), `axis1` (the index) and per block
///   `blockN_items` (its columns' names) and `blockN_values` (a 2-D rows × columns dataset).
///   pandas writes a string block of this format as one pickled NumPy object array, which is
///   decoded (`PickledArray`) and held in memory when the table is opened.
///
/// PyTables stores lists in attributes as Python pickles (protocol 0, text): `unpickle` reads
/// the small subset these attributes use.
enum PandasHDF5Layout {
    typealias Column = HDF5Source.Column

    /// Whether an open object is a group pandas wrote (it has the attribute `pandas_type`).
    static func isPandas(_ object: hid_t) -> Bool {
        H5Iget_type(object) == H5I_GROUP && H5Aexists(object, "pandas_type") > 0
    }

    /// The columns of the pandas group `group`; `description` names it in messages ("'f.h5':/df").
    ///
    /// The caller holds the HDF5 lock and closes what the layout holds if this throws.
    static func read(group: hid_t, description: String) throws -> HDF5Source.Layout {
        var layout = HDF5Source.Layout()
        do {
            switch stringAttribute(group, "pandas_type").map(name) ?? "" {
            case "frame_table": try readTable(group, description, into: &layout)
            case "frame": try readFixed(group, description, into: &layout)
            case let other:
                throw InputError("\(description) is a pandas '\(other)', not a DataFrame (pandas_type frame or frame_table)")
            }
        } catch {
            layout.close()
            throw error
        }
        return layout
    }

    // MARK: format="table"

    private static func readTable(_ group: hid_t, _ description: String, into layout: inout HDF5Source.Layout) throws {
        let dataset = H5Dopen2(group, "table", mlm_h5p_default())
        guard dataset >= 0 else { throw InputError("pandas table \(description) has no dataset 'table'") }
        layout.datasets.append(dataset)
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_COMPOUND else {
            throw InputError("pandas table \(description): its dataset 'table' is not a compound dataset")
        }
        var byName: [String: Column] = [:]
        var order: [String] = []
        for index in 0..<UInt32(max(0, H5Tget_nmembers(type))) {
            guard let pointer = H5Tget_member_name(type, index) else { continue }
            let member = String(fileCString: pointer)
            H5free_memory(pointer)
            if member == "index" { continue }
            let memberType = H5Tget_member_type(type, index)
            defer { H5Tclose(memberType) }
            var element = memberType
            var width = 1
            let isArray = H5Tget_class(memberType) == H5T_ARRAY
            if isArray {
                guard H5Tget_array_ndims(memberType) == 1 else {
                    throw InputError("pandas table \(description): member '\(member)' is not a 1-D array")
                }
                var dims: [hsize_t] = [0]
                H5Tget_array_dims2(memberType, &dims)
                width = Int(dims[0])
                element = H5Tget_super(memberType)
            }
            defer { if isArray { H5Tclose(element) } }
            let names = stringAttribute(dataset, "\(member)_kind").flatMap(unpickle).map(strings) ?? [member]
            guard names.count == width else {
                throw InputError("pandas table \(description): member '\(member)' holds \(width) columns, "
                    + "but its attribute '\(member)_kind' names \(names.count)")
            }
            var kind: HDF5Source.Kind
            if stringAttribute(dataset, "\(member)_meta").map(name) == "category" {
                kind = .categorical(categories: try categories(group, member: member, description))
            } else {
                kind = HDF5Source.kind(of: element, dataset: nil, types: &layout.types)
                if case .fixedString(let size, let cset, let pad, _) = kind {
                    let missing = stringAttribute(dataset, "\(member)_nan_rep") ?? Array("nan".utf8)
                    kind = .fixedString(size: size, cset: cset, pad: pad, missing: missing)
                }
            }
            for (position, column) in names.enumerated() {
                let location: HDF5Source.Location = isArray
                    ? .packed(member: member, width: width, index: position) : .member(member)
                byName[column] = Column(name: column, dataset: dataset, location: location, kind: kind)
                order.append(column)
            }
        }
        // The DataFrame's order, when the group's `non_index_axes` names the same columns.
        if let axes = stringAttribute(group, "non_index_axes").flatMap(unpickle), case .list(let entries) = axes {
            for case .tuple(let pair) in entries where pair.count == 2 {
                if case .int(1) = pair[0] {
                    let names = strings(pair[1])
                    if names.count == order.count, Set(names) == Set(order) { order = names }
                }
            }
        }
        layout.columns = order.map { byName[$0]! }
        layout.rowCount = HDF5Source.length(of: dataset)
    }

    /// A categorical member's categories, from the table `meta/<member>/meta/table` (member `values`).
    private static func categories(_ group: hid_t, member: String, _ description: String) throws -> [String] {
        let path = "meta/\(member)/meta/table"
        let failure = InputError("pandas table \(description): cannot read the categories of '\(member)' from '\(path)'")
        let dataset = H5Oexists(group, path) ? H5Dopen2(group, path, mlm_h5p_default()) : -1
        guard dataset >= 0 else { throw failure }
        defer { H5Dclose(dataset) }
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        let index = H5Tget_member_index(type, "values")
        guard H5Tget_class(type) == H5T_COMPOUND, index >= 0 else { throw failure }
        let valueType = H5Tget_member_type(type, UInt32(index))
        defer { H5Tclose(valueType) }
        let count = HDF5Source.length(of: dataset)
        guard count > 0 else { return [] }
        switch H5Tget_class(valueType) {
        case H5T_STRING where H5Tis_variable_str(valueType) <= 0:
            let size = H5Tget_size(valueType)
            let memoryType = HDF5Source.fixedStringType(size: size, cset: H5Tget_cset(valueType), pad: H5Tget_strpad(valueType))
            defer { H5Tclose(memoryType) }
            var bytes = [UInt8](repeating: 0, count: count * size)
            guard readMember("values", of: dataset, as: memoryType, into: &bytes) else { throw failure }
            return HDF5Source.unpaddedBytes(bytes, size: size).map { HDF5Source.labelText(Array($0)) }
        case H5T_INTEGER, H5T_FLOAT:
            var values = [Double](repeating: .nan, count: count)
            guard readMember("values", of: dataset, as: mlm_h5t_native_double(), into: &values) else { throw failure }
            return values.map(rLevelName)
        default:
            throw failure
        }
    }

    /// Reads the whole of member `member` of a compound dataset into `buffer` as `type`.
    private static func readMember<T>(_ member: String, of dataset: hid_t, as type: hid_t, into buffer: inout [T]) -> Bool {
        let memoryType = H5Tcreate(H5T_COMPOUND, H5Tget_size(type))
        guard memoryType >= 0 else { return false }
        defer { H5Tclose(memoryType) }
        guard withFileCString(member, { H5Tinsert(memoryType, $0, 0, type) }) >= 0 else { return false }
        return buffer.withUnsafeMutableBytes { bytes in
            H5Dread(dataset, memoryType, mlm_h5s_all(), mlm_h5s_all(), mlm_h5p_default(), bytes.baseAddress!) >= 0
        }
    }

    // MARK: format="fixed"

    private static func readFixed(_ group: hid_t, _ description: String, into layout: inout HDF5Source.Layout) throws {
        let axis0 = try names(group, "axis0", description)
        let index = H5Oexists(group, "axis1") ? H5Dopen2(group, "axis1", mlm_h5p_default()) : -1
        guard index >= 0 else { throw InputError("pandas frame \(description) has no dataset 'axis1' (its index)") }
        let rows = HDF5Source.length(of: index)
        H5Dclose(index)
        var byName: [String: Column] = [:]
        var order: [String] = []
        for block in 0..<max(0, integerAttribute(group, "nblocks") ?? 0) {
            let items = try names(group, "block\(block)_items", description)
            let valuesName = "block\(block)_values"
            let values = H5Oexists(group, valuesName) ? H5Dopen2(group, valuesName, mlm_h5p_default()) : -1
            guard values >= 0 else { throw InputError("pandas frame \(description) has no dataset '\(valuesName)'") }
            layout.datasets.append(values)
            if H5Aexists(values, "PSEUDOATOM") > 0 {
                // An object block: one pickled NumPy array of the block's strings.
                let array = readBytes(values).flatMap { PickledArray(pickle: $0) }
                let rowsFirst = array.map { $0.shape == [rows, items.count] || ($0.shape == [rows] && items.count == 1) } ?? false
                let columnsFirst = array?.shape == [items.count, rows]
                for (position, column) in items.enumerated() {
                    let kind: HDF5Source.Kind
                    if let array, rowsFirst || columnsFirst {
                        kind = .decoded((0..<rows).map { row in
                            let index = array.shape.count == 1 ? [row] : rowsFirst ? [row, position] : [position, row]
                            return array.element(index).flatMap { HDF5Source.nonMissing(HDF5Source.labelText($0)) }
                        })
                    } else {
                        kind = .unreadable("column '\(column)' in \(description) is a pandas format=\"fixed\" object block "
                            + "(a pickled Python array) that mlm cannot decode: write the DataFrame with format=\"table\"")
                    }
                    byName[column] = Column(name: column, dataset: values, location: .dataset, kind: kind)
                    order.append(column)
                }
                continue
            }
            let space = H5Dget_space(values)
            var dims: [hsize_t] = [0, 0]
            let rank = H5Sget_simple_extent_ndims(space)
            if rank == 2 { H5Sget_simple_extent_dims(space, &dims, nil) }
            H5Sclose(space)
            // pandas stores a block's (columns × rows) values transposed, as rows × columns.
            let transposed = integerAttribute(values, "transposed") != 1
            let shapeFits = rank == 2 && (transposed ? dims == [hsize_t(items.count), hsize_t(rows)]
                                                    : dims == [hsize_t(rows), hsize_t(items.count)])
            guard shapeFits else {
                throw InputError("pandas frame \(description): '\(valuesName)' does not hold \(items.count) columns of \(rows) rows")
            }
            let type = H5Dget_type(values)
            let kind = HDF5Source.kind(of: type, dataset: nil, types: &layout.types)
            H5Tclose(type)
            for (position, column) in items.enumerated() {
                byName[column] = Column(name: column, dataset: values, location: .matrix(index: position, transposed: transposed),
                                        kind: kind)
                order.append(column)
            }
        }
        if axis0.count == order.count, Set(axis0) == Set(order) { order = axis0 }
        layout.columns = order.map { byName[$0]! }
        layout.rowCount = rows
    }

    /// The bytes of the first element of a dataset of variable-length byte sequences (PyTables' VLArray), or nil.
    private static func readBytes(_ dataset: hid_t) -> [UInt8]? {
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        guard H5Sget_simple_extent_ndims(space) == 1, HDF5Source.length(of: dataset) == 1 else { return nil }
        let memoryType = H5Tvlen_create(mlm_h5t_native_uint8())
        guard memoryType >= 0 else { return nil }
        defer { H5Tclose(memoryType) }
        var sequence = hvl_t()
        guard H5Dread(dataset, memoryType, mlm_h5s_all(), mlm_h5s_all(), mlm_h5p_default(), &sequence) >= 0 else { return nil }
        defer { H5Dvlen_reclaim(memoryType, space, mlm_h5p_default(), &sequence) }
        guard let pointer = sequence.p else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: sequence.len))
    }

    /// The names held in a 1-D dataset of strings or integers (pandas' axes and block items).
    private static func names(_ group: hid_t, _ path: String, _ description: String) throws -> [String] {
        let failure = InputError("pandas frame \(description): cannot read the names in '\(path)'")
        let dataset = H5Oexists(group, path) ? H5Dopen2(group, path, mlm_h5p_default()) : -1
        guard dataset >= 0 else { throw failure }
        defer { H5Dclose(dataset) }
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        let count = HDF5Source.length(of: dataset)
        switch H5Tget_class(type) {
        case H5T_STRING where H5Tis_variable_str(type) <= 0:
            let size = H5Tget_size(type)
            let memoryType = HDF5Source.fixedStringType(size: size, cset: H5Tget_cset(type), pad: H5Tget_strpad(type))
            defer { H5Tclose(memoryType) }
            var bytes = [UInt8](repeating: 0, count: count * size)
            guard count == 0 || H5Dread(dataset, memoryType, mlm_h5s_all(), mlm_h5s_all(), mlm_h5p_default(), &bytes) >= 0 else {
                throw failure
            }
            return HDF5Source.unpaddedBytes(bytes, size: size).map { name(Array($0)) }
        case H5T_INTEGER:
            var values = [Int64](repeating: 0, count: count)
            guard count == 0 || H5Dread(dataset, mlm_h5t_native_int64(), mlm_h5s_all(), mlm_h5s_all(), mlm_h5p_default(), &values) >= 0 else {
                throw failure
            }
            return values.map(String.init)
        default:
            throw failure
        }
    }

    // MARK: Attributes

    /// Whether `path` (relative to `group`) names an existing object, checking each link on the way.
    private static func H5Oexists(_ group: hid_t, _ path: String) -> Bool {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/" + part
            guard H5Lexists(group, prefix, mlm_h5p_default()) > 0 else { return false }
        }
        return true
    }

    /// The bytes of a scalar string attribute (fixed-length, padding removed, or variable-length), or nil.
    static func stringAttribute(_ object: hid_t, _ name: String) -> [UInt8]? {
        guard H5Aexists(object, name) > 0 else { return nil }
        let attribute = H5Aopen(object, name, mlm_h5p_default())
        guard attribute >= 0 else { return nil }
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        let space = H5Aget_space(attribute)
        defer { H5Sclose(space) }
        guard H5Tget_class(type) == H5T_STRING, H5Sget_simple_extent_npoints(space) == 1 else { return nil }
        if H5Tis_variable_str(type) > 0 {
            let memoryType = HDF5Source.variableStringType(cset: H5Tget_cset(type))
            defer { H5Tclose(memoryType) }
            var pointer: UnsafeMutablePointer<CChar>?
            guard H5Aread(attribute, memoryType, &pointer) >= 0, let pointer else { return nil }
            defer { H5free_memory(pointer) }
            return Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
        }
        let size = H5Tget_size(type)
        let memoryType = HDF5Source.fixedStringType(size: size, cset: H5Tget_cset(type), pad: H5Tget_strpad(type))
        defer { H5Tclose(memoryType) }
        var bytes = [UInt8](repeating: 0, count: size)
        guard H5Aread(attribute, memoryType, &bytes) >= 0 else { return nil }
        return Array(bytes.prefix { $0 != 0 })
    }

    /// A scalar integer attribute (or an 8-bit bitfield, as PyTables writes a boolean), or nil.
    private static func integerAttribute(_ object: hid_t, _ name: String) -> Int? {
        guard H5Aexists(object, name) > 0 else { return nil }
        let attribute = H5Aopen(object, name, mlm_h5p_default())
        guard attribute >= 0 else { return nil }
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        if H5Tget_class(type) == H5T_BITFIELD, H5Tget_size(type) == 1 {
            var flag: UInt8 = 0
            return H5Aread(attribute, mlm_h5t_native_b8(), &flag) >= 0 ? Int(flag) : nil
        }
        guard H5Tget_class(type) == H5T_INTEGER else { return nil }
        var value: Int64 = 0
        guard H5Aread(attribute, mlm_h5t_native_int64(), &value) >= 0 else { return nil }
        return Int(value)
    }

    /// A column or attribute name from its bytes.
    private static func name(_ bytes: [UInt8]) -> String {
        String(fileBytes: bytes)
    }

    // MARK: Pickles

    /// A value of the pickle subset PyTables' attributes use.
    indirect enum Pickled: Equatable {
        case string(String), int(Int), none, list([Pickled]), tuple([Pickled]), other
    }

    /// The strings (and integers, as text) in a pickled list, flattened.
    static func strings(_ value: Pickled) -> [String] {
        switch value {
        case .string(let text): return [text]
        case .int(let number): return [String(number)]
        case .list(let items), .tuple(let items): return items.flatMap(strings)
        case .none, .other: return []
        }
    }

    /// Reads a protocol-0 (text) pickle of lists, tuples, strings, integers and None; nil for anything else.
    static func unpickle(_ bytes: [UInt8]) -> Pickled? {
        var stack: [Pickled] = []
        var marks: [Int] = []
        var memo: [Int: Pickled] = [:]
        var i = 0
        func line() -> [UInt8] {
            let start = i
            while i < bytes.count, bytes[i] != UInt8(ascii: "\n") { i += 1 }
            defer { i += 1 }
            return Array(bytes[start..<min(i, bytes.count)])
        }
        func collect() -> [Pickled]? {
            guard let mark = marks.popLast(), mark <= stack.count else { return nil }
            defer { stack.removeSubrange(mark...) }
            return Array(stack[mark...])
        }
        while i < bytes.count {
            let op = bytes[i]
            i += 1
            switch op {
            case UInt8(ascii: "("): marks.append(stack.count)
            case UInt8(ascii: "l"): guard let items = collect() else { return nil }; stack.append(.list(items))
            case UInt8(ascii: "t"): guard let items = collect() else { return nil }; stack.append(.tuple(items))
            case UInt8(ascii: "]"): stack.append(.list([]))
            case UInt8(ascii: ")"): stack.append(.tuple([]))
            case UInt8(ascii: "N"): stack.append(.none)
            case UInt8(ascii: "p"):
                guard let key = Int(name(line())), let top = stack.last else { return nil }
                memo[key] = top
            case UInt8(ascii: "g"):
                guard let key = Int(name(line())), let value = memo[key] else { return nil }
                stack.append(value)
            case UInt8(ascii: "V"): stack.append(.string(rawUnicodeEscaped(line())))
            case UInt8(ascii: "S"):
                let quoted = line()
                guard quoted.count >= 2 else { return nil }
                stack.append(.string(name(Array(quoted.dropFirst().dropLast()))))
            case UInt8(ascii: "I"), UInt8(ascii: "L"):
                let text = name(line()).trimmingSuffix("L")
                stack.append(Int(text).map(Pickled.int) ?? .other)
            case UInt8(ascii: "F"):
                _ = line()
                stack.append(.other)
            case UInt8(ascii: "a"):
                guard let value = stack.popLast(), case .list(let items)? = stack.last else { return nil }
                stack[stack.count - 1] = .list(items + [value])
            case UInt8(ascii: "e"):
                guard let values = collect(), case .list(let items)? = stack.last else { return nil }
                stack[stack.count - 1] = .list(items + values)
            case UInt8(ascii: "."):
                return stack.last
            default:
                return nil
            }
        }
        return nil
    }

    /// Python's raw-unicode-escape: bytes are code points U+0000–U+00FF, except `\uXXXX` and `\UXXXXXXXX`.
    private static func rawUnicodeEscaped(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 1 < bytes.count,
               bytes[i + 1] == UInt8(ascii: "u") || bytes[i + 1] == UInt8(ascii: "U") {
                let digits = bytes[i + 1] == UInt8(ascii: "u") ? 4 : 8
                if i + 2 + digits <= bytes.count, let code = UInt32(name(Array(bytes[(i + 2)..<(i + 2 + digits)])), radix: 16),
                   let scalar = Unicode.Scalar(code) {
                    scalars.append(scalar)
                    i += 2 + digits
                    continue
                }
            }
            scalars.append(Unicode.Scalar(bytes[i]))
            i += 1
        }
        return String(scalars)
    }
}

private extension String {
    /// The string without one trailing `suffix`, if it ends with it.
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
