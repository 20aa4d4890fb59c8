import Foundation

/// A CSV file read whole into memory, column by column (for small data).
///
/// Parsing follows RFC 4180: comma-separated fields, a first line of column names,
/// double-quoted fields that may hold commas, line breaks and `""` escapes, CRLF or LF
/// line endings, and an optional final line ending. Blank lines are skipped and a
/// leading UTF-8 byte-order mark is ignored.
///
/// A column is `.string` if any non-missing value is quoted (R's `write.csv` quotes every
/// factor and character value) or is not a number; otherwise it is `.numeric`. Numbers are
/// what `strtod` reads, so `1`, `-2.5`, `1e-05`, `Inf`, `-Inf` and `NaN` all parse (a model
/// refuses an infinite value, naming its line: `rowDescription`).
/// Missing values are an unquoted `NA`, an empty field, a quoted `"NA"` or `""`, and `NaN`:
/// numeric reads give NaN for them and string reads give nil.
public final class CSVSource: TableSource {
    public let name: String
    public let columnNames: [String]
    public let rowCount: Int

    /// The parsed values of one column.
    private enum Values {
        case numeric([Double])
        case strings([String?])
    }

    private let values: [Values]
    private let indexByName: [ExactString: Int]
    /// The line each data row's record starts on (1-based).
    private let recordLines: [Int]

    /// Reads and types every column of the CSV file at `path`.
    ///
    /// Throws `InputError` if the file cannot be read or is empty, a row has a different
    /// number of fields from the header, a quoted field is not closed, or two columns
    /// share a name.
    public init(path: String) throws {
        try requireReadableFile(path)
        var bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw InputError("cannot open data file '\(path)': \(error.localizedDescription)")
        }
        bytes.append(0)  // a terminator, so strtod never reads past the last field
        let parsed = try CSVParser(bytes: bytes, path: path).parse()

        name = path
        columnNames = parsed.header.map { CSVSource.text(of: $0, in: bytes) }
        var indexByName: [ExactString: Int] = [:]
        for (index, column) in columnNames.enumerated() {
            if let first = indexByName[ExactString(column)] {
                throw InputError("\(path): duplicate column name '\(column)' (columns \(first + 1) and \(index + 1))")
            }
            indexByName[ExactString(column)] = index
        }
        self.indexByName = indexByName
        rowCount = parsed.columns.first?.count ?? 0
        recordLines = parsed.lines
        values = parsed.columns.map { CSVSource.values(of: $0, in: bytes) }
    }

    public func rowDescription(_ row: Int) -> String {
        recordLines.indices.contains(row) ? "line \(recordLines[row])" : "row \(row + 1)"
    }

    public func columnType(_ column: String) throws -> ColumnType {
        switch values[try index(of: column)] {
        case .numeric: return .numeric
        case .strings: return .string
        }
    }

    public func readNumeric(_ column: String, rows: Range<Int>) throws -> [Double] {
        let index = try index(of: column)
        try checkRows(rows, column: column)
        guard case .numeric(let numbers) = values[index] else {
            throw InputError("column '\(column)' in \(name) holds strings, not numbers")
        }
        return Array(numbers[rows])
    }

    public func readStrings(_ column: String, rows: Range<Int>) throws -> [String?] {
        let index = try index(of: column)
        try checkRows(rows, column: column)
        guard case .strings(let strings) = values[index] else {
            throw InputError("column '\(column)' in \(name) holds numbers, not strings")
        }
        return Array(strings[rows])
    }

    /// The position of `column`, or the error listing the columns there are.
    private func index(of column: String) throws -> Int {
        guard let index = indexByName[ExactString(column)] else { throw unknownColumn(column) }
        return index
    }

    /// Types a column's fields (see the class discussion) and converts them.
    private static func values(of fields: [CSVField], in bytes: [UInt8]) -> Values {
        bytes.withUnsafeBufferPointer { buffer in
            let isNumeric = fields.allSatisfy { field in
                isMissing(field, in: buffer) || (!field.quoted && number(field, in: buffer) != nil)
            }
            if isNumeric {
                return .numeric(fields.map { field in
                    isMissing(field, in: buffer) ? .nan : number(field, in: buffer) ?? .nan
                })
            }
            // One String per distinct label (a factor column repeats a few labels many times).
            var texts: [FieldBytes: String] = [:]
            return .strings(fields.map { field in
                if isMissing(field, in: buffer) { return nil }
                if field.escaped { return text(of: field, in: bytes) }
                let key = FieldBytes(bytes: UnsafeBufferPointer(rebasing: buffer[field.start..<field.end]))
                if let known = texts[key] { return known }
                let made = text(of: field, in: bytes)
                texts[key] = made
                return made
            })
        }
    }

    /// True for an empty field or the text NA, quoted or not.
    private static func isMissing(_ field: CSVField, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let count = field.end - field.start
        return count == 0 || (count == 2 && bytes[field.start] == UInt8(ascii: "N")
            && bytes[field.start + 1] == UInt8(ascii: "A"))
    }

    /// The field read as a number (surrounding blanks allowed), or nil if it is not one.
    private static func number(_ field: CSVField, in bytes: UnsafeBufferPointer<UInt8>) -> Double? {
        let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
        var end: UnsafeMutablePointer<CChar>?
        let value = strtod(base + field.start, &end)
        guard var stop = end.map({ UnsafePointer($0) - base }), stop > field.start else { return nil }
        while stop < field.end, bytes[stop] == UInt8(ascii: " ") || bytes[stop] == UInt8(ascii: "\t") {
            stop += 1
        }
        return stop == field.end ? value : nil
    }

    /// The field's text, with `""` escapes in a quoted field turned into `"`.
    private static func text(of field: CSVField, in bytes: [UInt8]) -> String {
        let raw = bytes[field.start..<field.end]
        guard field.escaped else { return String(fileBytes: raw) }
        var unescaped: [UInt8] = []
        unescaped.reserveCapacity(raw.count)
        var previousWasQuote = false
        for byte in raw {
            if byte == UInt8(ascii: "\""), previousWasQuote {
                previousWasQuote = false
                continue
            }
            previousWasQuote = byte == UInt8(ascii: "\"")
            unescaped.append(byte)
        }
        return String(fileBytes: unescaped)
    }
}

/// Where one field's text lies in the file's bytes (inside the quotes, if quoted).
private struct CSVField {
    var start: Int
    var end: Int
    var quoted: Bool
    /// True if the quoted text holds `""` escapes still to be collapsed.
    var escaped: Bool
}

/// Splits a CSV file's bytes into a header and columns of field locations.
private struct CSVParser {
    let bytes: [UInt8]
    let path: String

    /// The header fields, per column the fields of every data row, and each data row's line.
    func parse() throws -> (header: [CSVField], columns: [[CSVField]], lines: [Int]) {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        let n = bytes.count - 1  // the last byte is the added terminator
        var i = n >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0
        var line = 1
        var recordLine = 1
        var header: [CSVField]?
        var columns: [[CSVField]] = []
        var lines: [Int] = []
        var record: [CSVField] = []

        func endRecord() throws {
            defer {
                record.removeAll(keepingCapacity: true)
                recordLine = line
            }
            if record.count == 1, !record[0].quoted, record[0].start == record[0].end { return }  // blank line
            guard let header else {
                header = record
                columns = Array(repeating: [], count: record.count)
                return
            }
            guard record.count == header.count else {
                throw InputError("\(path) line \(recordLine): \(record.count) fields, the header has \(header.count)")
            }
            for (column, field) in record.enumerated() { columns[column].append(field) }
            lines.append(recordLine)
        }

        while i < n {
            if bytes[i] == quote {
                let openingLine = line
                i += 1
                let start = i
                var escaped = false
                while true {
                    guard i < n else { throw InputError("\(path) line \(openingLine): unterminated quoted field") }
                    if bytes[i] == quote {
                        if i + 1 < n, bytes[i + 1] == quote {
                            escaped = true
                            i += 2
                            continue
                        }
                        break
                    }
                    if bytes[i] == lf { line += 1 }
                    i += 1
                }
                record.append(CSVField(start: start, end: i, quoted: true, escaped: escaped))
                i += 1
            } else {
                let start = i
                while i < n, bytes[i] != comma, bytes[i] != lf, bytes[i] != cr { i += 1 }
                record.append(CSVField(start: start, end: i, quoted: false, escaped: false))
            }
            guard i < n else { break }
            switch bytes[i] {
            case comma:
                i += 1
                if i == n { record.append(CSVField(start: i, end: i, quoted: false, escaped: false)) }
            case cr, lf:
                i += bytes[i] == cr && i + 1 < n && bytes[i + 1] == lf ? 2 : 1
                line += 1
                try endRecord()
            default:
                throw InputError("\(path) line \(line): unexpected text after the closing quote of field \(record.count)")
            }
        }
        if !record.isEmpty { try endRecord() }
        guard let header else { throw InputError("data file '\(path)' is empty") }
        return (header, columns, lines)
    }
}

/// A field's bytes in the file buffer, compared and hashed as bytes (used only while the buffer lives).
private struct FieldBytes: Hashable {
    let bytes: UnsafeBufferPointer<UInt8>

    static func == (a: FieldBytes, b: FieldBytes) -> Bool { sameBytes(a.bytes, b.bytes) }

    func hash(into hasher: inout Hasher) { hasher.combine(bytes: UnsafeRawBufferPointer(bytes)) }
}
