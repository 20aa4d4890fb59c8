import Foundation

/// A JSON document with object keys kept in the order they were given (readers compare files by eye).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.serialized() == b.serialized() }

    /// A number, or null when it is not finite (JSON has no NaN or infinity).
    static func finite(_ x: Double) -> JSONValue { x.isFinite ? .number(x) : .null }

    /// Pretty-printed JSON text with two-space indentation.
    public func serialized(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1), close = String(repeating: "  ", count: indent)
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let x):
            if x.isFinite, x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
            return x.isFinite ? "\(x)" : "null"
        case .string(let s): return JSONValue.quote(s)
        case .array(let items):
            if items.isEmpty { return "[]" }
            if items.allSatisfy({ if case .number = $0 { return true }; if case .string = $0 { return true }; return false }) {
                return "[" + items.map { $0.serialized() }.joined(separator: ", ") + "]"
            }
            return "[\n" + items.map { pad + $0.serialized(indent: indent + 1) }.joined(separator: ",\n") + "\n\(close)]"
        case .object(let fields):
            if fields.isEmpty { return "{}" }
            return "{\n" + fields.map { pad + JSONValue.quote($0.0) + ": " + $0.1.serialized(indent: indent + 1) }
                .joined(separator: ",\n") + "\n\(close)}"
        }
    }

    /// Parses JSON text as `JSONSerialization` does, after turning each lone low-surrogate escape
    /// `\udc80`–`\udcff` (a byte of a label that is not UTF-8, as `serialized()` writes it) back
    /// into that byte's escape scalar (see Label.swift), which a standard parser would refuse.
    public static func parse(_ data: Data) throws -> Any {
        try JSONSerialization.jsonObject(with: restoringByteEscapes(data))
    }

    /// `data` with every `\udcXX` escape (XX ≥ 80) not preceded by a high-surrogate escape
    /// rewritten as the surrogate pair of the escape scalar U+10FFXX.
    static func restoringByteEscapes(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        let backslash = UInt8(ascii: "\\")
        var i = 0
        var afterHighSurrogate = false
        func hexValue(_ at: Int) -> UInt32? {
            guard at + 6 <= bytes.count, bytes[at] == backslash, bytes[at + 1] == UInt8(ascii: "u") else { return nil }
            return UInt32(String(decoding: bytes[(at + 2)..<(at + 6)], as: UTF8.self), radix: 16)
        }
        while i < bytes.count {
            guard bytes[i] == backslash, i + 1 < bytes.count else {
                out.append(bytes[i]); i += 1; afterHighSurrogate = false
                continue
            }
            if let value = hexValue(i) {
                if (0xDC80...0xDCFF).contains(value), !afterHighSurrogate {
                    out += Array(String(format: "\\udbff\\udf%02x", value & 0xFF).utf8)
                } else {
                    out += bytes[i..<(i + 6)]
                }
                afterHighSurrogate = (0xD800...0xDBFF).contains(value)
                i += 6
            } else {
                out += bytes[i..<(i + 2)]  // any other escape, such as \\ or \", kept whole
                i += 2
                afterHighSurrogate = false
            }
        }
        return Data(out)
    }

    private static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else if let byte = String.escapedByte(u) {
                    out += String(format: "\\udc%02x", byte)  // a byte that is not UTF-8: Python's surrogateescape
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
