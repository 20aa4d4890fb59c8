import Foundation

/// Opens a data file as a `TableSource`, choosing the reader by the file's extension.
///
/// `.csv` (any case) gives a `CSVSource`; `.h5`, `.hdf5` and `.he5` give an `HDF5Source`
/// reading `table` (a group of column datasets or a compound dataset; nil lets the
/// reader pick the file's only table). `table` is an error for a CSV file.
public func openTable(path: String, table: String?) throws -> TableSource {
    switch URL(fileURLWithPath: path).pathExtension.lowercased() {
    case "csv":
        if table != nil { throw InputError("--table applies to .h5 files only, not '\(path)'") }
        return try CSVSource(path: path)
    case "h5", "hdf5", "he5":
        return try HDF5Source(path: path, table: table)
    default:
        try requireReadableFile(path)
        throw InputError("unsupported data file '\(path)': use .csv or .h5")
    }
}

/// Throws the system's reason, in one line, if `path` cannot be opened for reading.
///
/// Both readers call this first so a missing file reads the same for either kind:
/// "cannot open data file 'x.csv': No such file or directory".
func requireReadableFile(_ path: String) throws {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else {
        throw InputError("cannot open data file '\(path)': \(String(cString: strerror(errno)))")
    }
    close(descriptor)
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw InputError("cannot open data file '\(path)': Is a directory")
    }
}

extension TableSource {
    /// The error for a column name the table does not have, listing the ones it does.
    func unknownColumn(_ column: String) -> InputError {
        InputError("no column '\(column)' in \(name) (columns: \(columnNames.joined(separator: ", ")))")
    }

    /// Throws unless `rows` lies within `0..<rowCount`.
    func checkRows(_ rows: Range<Int>, column: String) throws {
        guard rows.lowerBound >= 0, rows.upperBound <= rowCount else {
            throw InputError("rows \(rows.lowerBound)..<\(rows.upperBound) of column '\(column)' are outside "
                + "\(name), which has \(rowCount) rows")
        }
    }
}
