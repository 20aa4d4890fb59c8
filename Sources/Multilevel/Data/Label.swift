import Foundation

// Labels are the bytes in the file.
//
// Level names and column names are Swift `String`s, but a file's bytes need not be UTF-8
// (Latin-1 `caf\xe9` and `caf\xe8` both decode to `caf\u{FFFD}` with repair), and Swift's
// `==` is canonical equivalence (NFC and NFD "é" are equal and hash alike). Either would
// merge two groups that the file keeps apart. Two rules keep labels exact:
//
// - Text read from a file is decoded one-to-one (`String(fileBytes:)`): valid UTF-8 as it is,
//   and each byte of an invalid sequence as the private-use scalar U+10FF00 + byte (an "escape
//   scalar"; bytes 0x80–0xFF, so U+10FF80–U+10FFFF). A genuine scalar of that range in the file
//   is escaped byte by byte too, so `fileBytes` always gives the file's bytes back.
// - Labels are compared and hashed by their UTF-8 bytes (`ExactString`) and sorted by their
//   file bytes (R's C-locale order).
//
// Outputs: text files, the terminal and HDF5 get the file's bytes (`fileBytes`); JSON writes an
// escaped byte as `\udcXX`, Python's surrogateescape convention, read back by `JSONValue.parse`;
// HTML and SVG, which must be UTF-8, show it as `\xXX` (`displayText`).

extension String {
    /// The text of `bytes` as read from a file: valid UTF-8 as it is, any other byte as an
    /// escape scalar, so that distinct byte strings give distinct texts.
    public init<Bytes: Collection>(fileBytes bytes: Bytes) where Bytes.Element == UInt8 {
        if !bytes.contains(where: { $0 >= 0xF4 }), let text = String(validating: bytes, as: UTF8.self) {
            self = text  // the common case: valid UTF-8 that cannot hold an escape scalar
            return
        }
        let a = Array(bytes)
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < a.count {
            if let (scalar, length) = decodeScalar(a, at: i), !isEscapeScalar(scalar.value) {
                scalars.append(scalar)
                i += length
            } else {
                scalars.append(Unicode.Scalar(escapeBase + UInt32(a[i]))!)
                i += 1
            }
        }
        self = String(scalars)
    }

    /// The text of a NUL-terminated C string from a file (an HDF5 string or name), as `init(fileBytes:)`.
    init(fileCString pointer: UnsafePointer<CChar>) {
        self.init(fileBytes: UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
    }

    /// The bytes this text stands for in the file it came from (UTF-8, with each escape
    /// scalar turned back into its byte).
    public var fileBytes: [UInt8] {
        if !utf8.contains(0xF4) { return Array(utf8) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        for scalar in unicodeScalars {
            if isEscapeScalar(scalar.value) { bytes.append(UInt8(scalar.value - escapeBase)) } else { bytes.append(contentsOf: String(scalar).utf8) }
        }
        return bytes
    }

    /// The text for a page that must be UTF-8 (HTML, SVG): each escaped byte shown as `\xXX`.
    public var displayText: String {
        guard utf8.contains(0xF4) else { return self }
        var out = ""
        for scalar in unicodeScalars {
            if isEscapeScalar(scalar.value) { out += String(format: "\\x%02x", scalar.value - escapeBase) } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    /// The byte an escape scalar stands for, or nil for any other scalar.
    static func escapedByte(_ scalar: Unicode.Scalar) -> UInt8? {
        isEscapeScalar(scalar.value) ? UInt8(scalar.value - escapeBase) : nil
    }
}

/// Calls `body` with `text` as the NUL-terminated bytes it stands for in the file: how a name
/// read from an HDF5 file is given back to the library.
func withFileCString<Result>(_ text: String, _ body: (UnsafePointer<CChar>) throws -> Result) rethrows -> Result {
    let bytes = text.fileBytes.map { CChar(bitPattern: $0) } + [0]
    return try bytes.withUnsafeBufferPointer { try body($0.baseAddress!) }
}

/// Escape scalars are U+10FF00 + byte for the bytes 0x80–0xFF (ASCII is always valid UTF-8).
private let escapeBase: UInt32 = 0x10FF00

private func isEscapeScalar(_ value: UInt32) -> Bool { value >= escapeBase + 0x80 && value <= 0x10FFFF }

/// The scalar encoded in well-formed UTF-8 at `a[i]` and its length in bytes, or nil if the
/// bytes there are not a well-formed sequence (RFC 3629: no overlong forms, no surrogates,
/// nothing past U+10FFFF).
private func decodeScalar(_ a: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
    let b0 = a[i]
    let length: Int, initial: UInt32, minimum: UInt32
    switch b0 {
    case 0x00...0x7F: return (Unicode.Scalar(b0), 1)
    case 0xC2...0xDF: (length, initial, minimum) = (2, UInt32(b0 & 0x1F), 0x80)
    case 0xE0...0xEF: (length, initial, minimum) = (3, UInt32(b0 & 0x0F), 0x800)
    case 0xF0...0xF4: (length, initial, minimum) = (4, UInt32(b0 & 0x07), 0x10000)
    default: return nil
    }
    guard i + length <= a.count else { return nil }
    var value = initial
    for k in 1..<length {
        let b = a[i + k]
        guard b & 0xC0 == 0x80 else { return nil }
        value = value << 6 | UInt32(b & 0x3F)
    }
    guard value >= minimum, let scalar = Unicode.Scalar(value) else { return nil }  // nil for surrogates and > U+10FFFF
    return (scalar, length)
}

/// Whether two buffers hold the same bytes (labels compare so, not by canonical equivalence).
func sameBytes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
    a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
}

/// A string that is equal to another only when their bytes are: the key type for labels,
/// where Swift's canonical equivalence would merge distinct groups.
struct ExactString: Hashable {
    let value: String

    init(_ value: String) { self.value = value }

    static func == (a: ExactString, b: ExactString) -> Bool {
        var x = a.value, y = b.value
        return x.withUTF8 { px in y.withUTF8 { py in sameBytes(px, py) } }
    }

    func hash(into hasher: inout Hasher) {
        var value = value
        value.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
