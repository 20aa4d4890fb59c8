import Foundation

/// Decodes the pickle of a NumPy object array of strings, as pandas' `format="fixed"` stores a
/// string block (`blockN_values`: one variable-length byte string holding the pickle).
///
/// Only what such a pickle uses is understood (protocols 2–5): `numpy.core.multiarray._reconstruct`
/// and `numpy.dtype` are recorded by name, not called; the array is the state given to `BUILD`,
/// `(version, shape, dtype, isFortranOrder, items)`. NumPy lists an object array's items in C
/// (row-major) order whatever its memory order (`_getlist_pkl` walks a C-order iterator). An item
/// is a string (its UTF-8 bytes), or missing (None or a float NaN, pandas' missing strings).
/// Anything else makes the decoding fail.
struct PickledArray {
    /// The array's shape (1-D or 2-D).
    let shape: [Int]
    /// The elements in C order: UTF-8 bytes, or nil for a missing value.
    let items: [[UInt8]?]

    /// The element at `index` (one subscript per dimension).
    func element(_ index: [Int]) -> [UInt8]? {
        guard index.count == shape.count else { return nil }
        var linear = 0
        for axis in 0..<shape.count { linear = linear * shape[axis] + index[axis] }
        return items[linear]
    }

    private indirect enum Value {
        case text([UInt8]), number(Double), integer(Int), bool(Bool), none, bytes
        case tuple([Value]), list(Int), global(String), call(String, [Value]), array(PickledArray)
    }

    /// Decodes `bytes`, or returns nil if they are not a pickled object array of strings.
    init?(pickle bytes: [UInt8]) {
        var stack: [Value] = []
        var marks: [Int] = []
        var memo: [Int: Value] = [:]
        var lists: [[Value]] = []  // lists by identity (`Value.list`), appended to in place
        var i = 0
        func take(_ count: Int) -> ArraySlice<UInt8>? {
            guard count >= 0, i + count <= bytes.count else { return nil }
            defer { i += count }
            return bytes[i..<(i + count)]
        }
        func littleEndian(_ count: Int) -> Int? {
            guard let raw = take(count) else { return nil }
            var value = 0
            for (shift, byte) in raw.enumerated() { value |= Int(byte) << (8 * shift) }
            return value
        }
        func popMark() -> [Value]? {
            guard let mark = marks.popLast(), mark <= stack.count else { return nil }
            defer { stack.removeSubrange(mark...) }
            return Array(stack[mark...])
        }
        func pop(_ count: Int) -> [Value]? {
            guard stack.count >= count else { return nil }
            defer { stack.removeLast(count) }
            return Array(stack.suffix(count))
        }
        while i < bytes.count {
            let op = bytes[i]
            i += 1
            switch op {
            case 0x80: guard take(1) != nil else { return nil }                  // PROTO
            case 0x95: guard take(8) != nil else { return nil }                  // FRAME
            case 0x8C, 0x58, 0x8D:                                               // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
                guard let count = littleEndian(op == 0x8C ? 1 : op == 0x58 ? 4 : 8), let text = take(count) else { return nil }
                stack.append(.text(Array(text)))
            case 0x43, 0x42:                                                     // SHORT_BINBYTES, BINBYTES
                guard let count = littleEndian(op == 0x43 ? 1 : 4), take(count) != nil else { return nil }
                stack.append(.bytes)
            case 0x94: guard let top = stack.last else { return nil }; memo[memo.count] = top   // MEMOIZE
            case 0x71, 0x72:                                                     // BINPUT, LONG_BINPUT
                guard let key = littleEndian(op == 0x71 ? 1 : 4), let top = stack.last else { return nil }
                memo[key] = top
            case 0x68, 0x6A:                                                     // BINGET, LONG_BINGET
                guard let key = littleEndian(op == 0x68 ? 1 : 4), let value = memo[key] else { return nil }
                stack.append(value)
            case 0x93:                                                           // STACK_GLOBAL
                guard let names = pop(2), case .text(let module) = names[0], case .text(let name) = names[1] else { return nil }
                stack.append(.global(String(decoding: module, as: UTF8.self) + "." + String(decoding: name, as: UTF8.self)))
            case 0x4B: guard let value = littleEndian(1) else { return nil }; stack.append(.integer(value))   // BININT1
            case 0x4D: guard let value = littleEndian(2) else { return nil }; stack.append(.integer(value))   // BININT2
            case 0x4A:                                                           // BININT
                guard let value = littleEndian(4) else { return nil }
                stack.append(.integer(Int(Int32(truncatingIfNeeded: value))))
            case 0x47:                                                           // BINFLOAT (big-endian)
                guard let raw = take(8) else { return nil }
                stack.append(.number(Double(bitPattern: raw.reduce(0) { $0 << 8 | UInt64($1) })))
            case 0x4E: stack.append(.none)                                       // NONE
            case 0x88: stack.append(.bool(true))                                 // NEWTRUE
            case 0x89: stack.append(.bool(false))                                // NEWFALSE
            case 0x28: marks.append(stack.count)                                 // MARK
            case 0x29: stack.append(.tuple([]))                                  // EMPTY_TUPLE
            case 0x5D:                                                           // EMPTY_LIST
                stack.append(.list(lists.count))
                lists.append([])
            case 0x85, 0x86, 0x87:                                               // TUPLE1, TUPLE2, TUPLE3
                guard let items = pop(Int(op - 0x84)) else { return nil }
                stack.append(.tuple(items))
            case 0x74: guard let items = popMark() else { return nil }; stack.append(.tuple(items))   // TUPLE
            case 0x61:                                                           // APPEND
                guard let item = stack.popLast(), case .list(let list)? = stack.last else { return nil }
                lists[list].append(item)
            case 0x65:                                                           // APPENDS
                guard let added = popMark(), case .list(let list)? = stack.last else { return nil }
                lists[list] += added
            case 0x52:                                                           // REDUCE
                guard let call = pop(2), case .global(let name) = call[0], case .tuple(let arguments) = call[1] else { return nil }
                stack.append(.call(name, arguments))
            case 0x62:                                                           // BUILD
                guard let built = pop(2) else { return nil }
                if case .call(let name, _) = built[0], name.hasSuffix("._reconstruct"),
                   case .tuple(let state) = built[1], state.count == 5,
                   case .tuple(let dims) = state[1], case .bool = state[3], case .list(let list) = state[4] {
                    let elements = lists[list]
                    var shape: [Int] = []
                    for case .integer(let n) in dims { shape.append(n) }
                    var items: [[UInt8]?] = []
                    items.reserveCapacity(elements.count)
                    for element in elements {
                        switch element {
                        case .text(let text): items.append(text)
                        case .none: items.append(nil)
                        case .number(let x) where x.isNaN: items.append(nil)
                        default: return nil
                        }
                    }
                    guard shape.count == dims.count, (1...2).contains(shape.count), shape.reduce(1, *) == items.count else { return nil }
                    stack.append(.array(PickledArray(shape: shape, items: items)))
                } else {
                    stack.append(built[0])  // e.g. a dtype's state: keep the object
                }
            case 0x2E:                                                           // STOP
                guard case .array(let array)? = stack.last else { return nil }
                self = array
                return
            default:
                return nil
            }
        }
        return nil
    }

    private init(shape: [Int], items: [[UInt8]?]) {
        self.shape = shape
        self.items = items
    }
}
