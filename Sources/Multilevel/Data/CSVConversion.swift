import Foundation

/// What `convertCSVToHDF5` wrote.
public struct CSVConversion: Sendable {
    /// The columns in the CSV's order, as written (numeric or string).
    public let columns: [HDF5TableWriter.Column]
    /// The number of data rows.
    public let rowCount: Int
}

/// Converts a CSV file to an HDF5 table that `HDF5Source` reads with the same values, streamed.
///
/// Every column becomes a 1-D dataset in `group`, in the CSV's order, typed as `CSVSource`
/// types it: numeric columns as float64 (missing as NaN), string columns as variable-length
/// UTF-8 strings (the field's bytes unchanged; missing as "NA", which `HDF5Source` reads as
/// missing). h5py, hdf5r and rhdf5 read such a group as they wrote it.
///
/// The file is read twice through a fixed buffer (`CSVRecordReader`): once to type the
/// columns and check every line, then to write `chunkRows` rows at a time, so memory does
/// not grow with the number of rows. Nothing is written if the CSV is malformed. Throws
/// `InputError` as `CSVSource` does for a malformed CSV, or if the HDF5 file cannot be written.
@discardableResult
public func convertCSVToHDF5(csvPath: String, h5Path: String, group: String = "data",
                             chunkRows: Int = 65_536) throws -> CSVConversion {
    try convertCSVToHDF5(csvPath: csvPath, h5Path: h5Path, group: group, chunkRows: chunkRows, bufferSize: 1 << 20)
}

/// `convertCSVToHDF5` reading the CSV through a buffer of `bufferSize` bytes (small in tests,
/// so that fields, quotes and line endings straddle refills).
func convertCSVToHDF5(csvPath: String, h5Path: String, group: String, chunkRows: Int,
                      bufferSize: Int) throws -> CSVConversion {
    guard chunkRows > 0 else { throw InputError("the chunk of rows to convert at a time must be positive") }
    // Pass 1: names, types and row count.
    let reader = try CSVRecordReader(path: csvPath, bufferSize: bufferSize)
    guard try reader.next() else { throw InputError("data file '\(csvPath)' is empty") }
    let names = (0..<reader.fields.count).map { String(fileBytes: reader.bytes(of: $0)) }
    var indexByName: [ExactString: Int] = [:]
    for (index, name) in names.enumerated() {
        if let first = indexByName[ExactString(name)] {
            throw InputError("\(csvPath): duplicate column name '\(name)' (columns \(first + 1) and \(index + 1))")
        }
        indexByName[ExactString(name)] = index
    }
    var numeric = [Bool](repeating: true, count: names.count)
    var rowCount = 0
    while try reader.next() {
        guard reader.fields.count == names.count else {
            throw InputError("\(csvPath) line \(reader.recordLine): \(reader.fields.count) fields, the header has \(names.count)")
        }
        for column in 0..<names.count where numeric[column] {
            numeric[column] = reader.isMissing(column) || reader.number(column) != nil
        }
        rowCount += 1
    }
    let columns = zip(names, numeric).map { name, isNumeric -> HDF5TableWriter.Column in
        isNumeric ? .numeric(name) : .string(name)
    }

    // Pass 2: the values, a chunk at a time.
    let writer = try HDF5TableWriter(path: h5Path, group: group, columns: columns, chunkRows: min(chunkRows, 65_536))
    let rows = try CSVRecordReader(path: csvPath, bufferSize: bufferSize)
    _ = try rows.next()  // the header
    var numbers = [[Double]](repeating: [], count: names.count)
    var strings = [[ArraySlice<UInt8>?]](repeating: [], count: names.count)
    func flush() throws {
        var numericChunk: [String: [Double]] = [:]
        var stringChunk: [String: [ArraySlice<UInt8>?]] = [:]
        for (column, name) in names.enumerated() {
            if numeric[column] { numericChunk[name] = numbers[column] } else { stringChunk[name] = strings[column] }
            numbers[column].removeAll(keepingCapacity: true)
            strings[column].removeAll(keepingCapacity: true)
        }
        try writer.append(numeric: numericChunk, stringBytes: stringChunk)
    }
    var pending = 0
    while try rows.next() {
        for column in 0..<names.count {
            let missing = rows.isMissing(column)
            if numeric[column] {
                numbers[column].append(missing ? .nan : rows.number(column) ?? .nan)
            } else {
                strings[column].append(missing ? nil : ArraySlice(rows.bytes(of: column)))
            }
        }
        pending += 1
        if pending == chunkRows {
            try flush()
            pending = 0
        }
    }
    if pending > 0 { try flush() }
    try writer.close()
    return CSVConversion(columns: columns, rowCount: rowCount)
}
