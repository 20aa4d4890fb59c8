import Foundation

/// Bytes for messages between ranks and for checkpoints: integers and doubles as their raw
/// 64-bit patterns (so every double travels bit for bit), strings as UTF-8 with a length.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    mutating func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func double(_ v: Double) { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) { let u = Array(s.utf8); int(u.count); bytes.append(contentsOf: u) }
    mutating func bool(_ b: Bool) { int(b ? 1 : 0) }
    mutating func ints(_ v: [Int]) { int(v.count); for x in v { int(x) } }
    mutating func int32s(_ v: [Int32]) { int(v.count); for x in v { int(Int(x)) } }
    mutating func uint64s(_ v: [UInt64]) { int(v.count); for x in v { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } } }
    mutating func doubles(_ v: [Double]) { int(v.count); for x in v { double(x) } }
    mutating func strings(_ v: [String]) { int(v.count); for s in v { string(s) } }
    mutating func bytes(_ v: [UInt8]) { int(v.count); bytes.append(contentsOf: v) }
}

/// Reads what `ByteWriter` wrote, in the same order.
struct ByteReader {
    private let data: [UInt8]
    private var at = 0
    init(_ bytes: [UInt8]) { data = bytes }

    private mutating func word() -> UInt64 {
        precondition(at + 8 <= data.count, "a message ended early")
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(data[at + k]) << (8 * k) }
        at += 8
        return v
    }
    mutating func int() -> Int { Int(Int64(bitPattern: word())) }
    mutating func double() -> Double { Double(bitPattern: word()) }
    mutating func bool() -> Bool { int() != 0 }
    mutating func string() -> String {
        let n = int()
        precondition(at + n <= data.count, "a message ended early")
        defer { at += n }
        return String(decoding: data[at..<(at + n)], as: UTF8.self)
    }
    mutating func ints() -> [Int] { (0..<int()).map { _ in int() } }
    mutating func int32s() -> [Int32] { (0..<int()).map { _ in Int32(int()) } }
    mutating func uint64s() -> [UInt64] { (0..<int()).map { _ in word() } }
    mutating func doubles() -> [Double] { (0..<int()).map { _ in double() } }
    mutating func strings() -> [String] { (0..<int()).map { _ in string() } }
    mutating func bytes() -> [UInt8] {
        let n = int()
        precondition(at + n <= data.count, "a message ended early")
        defer { at += n }
        return Array(data[at..<(at + n)])
    }
}

extension CrossProducts {
    /// The cross-products as bytes (every rank refits from rank 0's, bit for bit).
    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.int(rows)
        w.int(terms.count)
        for t in terms { w.string(t.group); w.strings(t.effects); w.strings(t.levels); w.int(t.offset) }
        w.strings(fixedNames)
        w.ints(blockStart); w.ints(blockTerm); w.ints(blockRowStarts); w.int32s(blockRows)
        w.ints(zzColumnStarts); w.int32s(zzRowIndices); w.doubles(zzValues)
        w.doubles(zxy); w.doubles(xyxy); w.double(logWeights)
        return w.bytes
    }

    init(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        let rows = r.int()
        let terms = (0..<r.int()).map { _ in
            RandomEffectsTerm(group: r.string(), effects: r.strings(), levels: r.strings(), offset: r.int())
        }
        self.init(rows: rows, terms: terms, fixedNames: r.strings(),
                  blockStart: r.ints(), blockTerm: r.ints(), blockRowStarts: r.ints(), blockRows: r.int32s(),
                  zzColumnStarts: r.ints(), zzRowIndices: r.int32s(), zzValues: r.doubles(),
                  zxy: r.doubles(), xyxy: r.doubles(), logWeights: r.double())
    }
}
