import Foundation

/// Reads a CSV file one record at a time through a fixed buffer, so memory does not grow with
/// the file (what `convertCSVToHDF5` streams through; `CSVSource` reads the whole file).
///
/// The grammar and messages are `CSVSource`'s: RFC 4180 fields, `""` escapes, CRLF, LF or CR
/// line endings, blank lines skipped, a leading UTF-8 byte-order mark ignored.
final class CSVRecordReader {
    /// One field of the current record: `bytes[start..<end]` (unescaped, inside the quotes).
    struct Field {
        let start: Int
        let end: Int
        let quoted: Bool
    }

    let path: String
    /// The current record's field texts, each followed by a NUL (so `strtod` stops there).
    private(set) var bytes: [UInt8] = []
    /// The current record's fields.
    private(set) var fields: [Field] = []
    /// The line the current record starts on (1-based).
    private(set) var recordLine = 1

    private let file: UnsafeMutablePointer<FILE>
    private var buffer: [UInt8]
    private var position = 0
    private var filled = 0
    private var line = 1

    /// Opens `path`; throws `InputError` if it cannot be read.
    init(path: String, bufferSize: Int = 1 << 20) throws {
        try requireReadableFile(path)
        guard let file = fopen(path, "rb") else {
            throw InputError("cannot open data file '\(path)': \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.file = file
        buffer = [UInt8](repeating: 0, count: max(bufferSize, 4))
        refill()
        if filled >= 3, buffer[0] == 0xEF, buffer[1] == 0xBB, buffer[2] == 0xBF { position = 3 }
    }

    deinit { fclose(file) }

    /// The next byte without consuming it, or nil at the end of the file.
    @inline(__always) private func peek() -> UInt8? {
        if position == filled { refill() }
        return position < filled ? buffer[position] : nil
    }

    private func refill() {
        position = 0
        filled = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
    }

    /// Reads the next non-blank record into `fields`; false at the end of the file.
    func next() throws -> Bool {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        while true {
            bytes.removeAll(keepingCapacity: true)
            fields.removeAll(keepingCapacity: true)
            recordLine = line
            guard peek() != nil else { return false }
            record: while true {
                let start = bytes.count
                var quoted = false
                if peek() == quote {
                    quoted = true
                    position += 1
                    let openingLine = line
                    while true {
                        guard let byte = peek() else { throw InputError("\(path) line \(openingLine): unterminated quoted field") }
                        position += 1
                        if byte == quote {
                            if peek() == quote {
                                position += 1
                                bytes.append(quote)
                                continue
                            }
                            break
                        }
                        if byte == lf { line += 1 }
                        bytes.append(byte)
                    }
                } else {
                    while let byte = peek(), byte != comma, byte != lf, byte != cr {
                        bytes.append(byte)
                        position += 1
                    }
                }
                fields.append(Field(start: start, end: bytes.count, quoted: quoted))
                bytes.append(0)
                guard let byte = peek() else { break record }
                switch byte {
                case comma:
                    position += 1
                    if peek() == nil {  // a final comma: one more, empty field
                        fields.append(Field(start: bytes.count, end: bytes.count, quoted: false))
                        bytes.append(0)
                        break record
                    }
                case cr, lf:
                    position += 1
                    if byte == cr, peek() == lf { position += 1 }
                    line += 1
                    break record
                default:
                    throw InputError("\(path) line \(line): unexpected text after the closing quote of field \(fields.count)")
                }
            }
            if fields.count == 1, !fields[0].quoted, fields[0].start == fields[0].end { continue }  // a blank line
            return true
        }
    }

    /// The text of field `index` of the current record.
    func bytes(of index: Int) -> ArraySlice<UInt8> { bytes[fields[index].start..<fields[index].end] }

    /// True for an empty field or the text NA, quoted or not (`CSVSource`'s missing values).
    func isMissing(_ index: Int) -> Bool {
        let field = fields[index]
        let count = field.end - field.start
        return count == 0 || (count == 2 && bytes[field.start] == UInt8(ascii: "N") && bytes[field.start + 1] == UInt8(ascii: "A"))
    }

    /// Field `index` read as a number as `CSVSource` reads one (unquoted, all of it, trailing blanks allowed), or nil.
    func number(_ index: Int) -> Double? {
        let field = fields[index]
        guard !field.quoted else { return nil }
        return bytes.withUnsafeBufferPointer { buffer -> Double? in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var end: UnsafeMutablePointer<CChar>?
            let value = strtod(base + field.start, &end)
            guard var stop = end.map({ UnsafePointer($0) - base }), stop > field.start else { return nil }
            while stop < field.end, buffer[stop] == UInt8(ascii: " ") || buffer[stop] == UInt8(ascii: "\t") { stop += 1 }
            return stop == field.end ? value : nil
        }
    }
}
