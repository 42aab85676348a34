/// A small JSON object reader on bytes, for the two inputs of the order hot path: the bearer token's
/// header and claims, and the order body. Strict RFC 8259 (UTF-8, no trailing garbage, no duplicate member
/// names: a token with two `sub` claims is refused), bounded (depth 16, `maxMembers` per object). Nested
/// objects are read; arrays are checked and skipped (`.nested`): neither input needs one.
struct JSONObject: Equatable {
    /// Not `indirect`: a nested object recurses through its members' dictionary storage already, and an
    /// indirect case would box every member's value (one allocation per member).
    enum Value: Equatable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
        case object(JSONObject)
        /// An array (checked, not kept).
        case nested
    }

    private(set) var members: [String: Value] = [:]

    subscript(name: String) -> Value? { members[name] }

    /// nil when the bytes are not one JSON object within the bounds.
    init?(_ bytes: [UInt8], maxMembers: Int = 64) {
        var reader = Reader(bytes: bytes, maxMembers: maxMembers)
        guard let members = reader.topLevelObject() else { return nil }
        self.members = members
    }

    private init(members: [String: Value]) {
        self.members = members
    }

    private struct Reader {
        let bytes: [UInt8]
        let maxMembers: Int
        var index = 0

        init(bytes: [UInt8], maxMembers: Int) {
            self.bytes = bytes
            self.maxMembers = maxMembers
        }

        mutating func topLevelObject() -> [String: Value]? {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "{"), let members = object(depth: 1) else { return nil }
            return atEnd() ? members : nil
        }

        /// The object at `index` (which holds `{`).
        private mutating func object(depth: Int) -> [String: Value]? {
            guard depth <= 16, take(UInt8(ascii: "{")) else { return nil }
            // Room for six members at once: a token's claims and an order's objects have two to five, and a
            // dictionary grown one insert at a time reallocates at the 2nd and 4th member.
            var members: [String: Value] = [:]
            members.reserveCapacity(Swift.min(6, maxMembers))
            skipSpace()
            if take(UInt8(ascii: "}")) { return members }
            while true {
                skipSpace()
                guard let name = string() else { return nil }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                // A duplicate name refuses the whole object (so the value it replaced is never read).
                guard let value = value(depth: depth), members.count < maxMembers,
                      members.updateValue(value, forKey: name) == nil else { return nil }
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                return take(UInt8(ascii: "}")) ? members : nil
            }
        }

        private mutating func atEnd() -> Bool {
            skipSpace()
            return index == bytes.count
        }

        private mutating func value(depth: Int) -> Value? {
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""): return string().map(Value.string)
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            case UInt8(ascii: "{"): return object(depth: depth + 1).map { .object(JSONObject(members: $0)) }
            case UInt8(ascii: "["): return skipNested(depth: depth) ? .nested : nil
            default: return number().map(Value.number)
            }
        }

        private mutating func skipNested(depth: Int) -> Bool {
            guard depth <= 16 else { return false }
            let object = bytes[index] == UInt8(ascii: "{")
            let close = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
            index += 1
            skipSpace()
            if take(close) { return true }
            while true {
                skipSpace()
                if object {
                    guard string() != nil else { return false }
                    skipSpace()
                    guard take(UInt8(ascii: ":")) else { return false }
                    skipSpace()
                }
                guard value(depth: depth + 1) != nil else { return false }
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                return take(close)
            }
        }

        private mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
            index += count
            return true
        }

        /// RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
        private mutating func number() -> Double? {
            let start = index
            _ = take(UInt8(ascii: "-"))
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                guard digits() > 0 else { return nil }
            }
            if take(UInt8(ascii: ".")) { guard digits() > 0 else { return nil } }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
                guard digits() > 0 else { return nil }
            }
            guard index - start <= 40 else { return nil }
            return Double(String(decoding: bytes[start..<index], as: UTF8.self))
        }

        private mutating func digits() -> Int {
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
            return index - start
        }

        /// A string at `index` (which holds the opening quote), unescaped; nil when malformed.
        private mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            var scalars = String.UnicodeScalarView()
            var runStart = index
            var plain = true
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    let run = bytes[runStart..<index]
                    index += 1
                    if plain { return String(validating: run, as: UTF8.self) }
                    guard let tail = String(validating: run, as: UTF8.self) else { return nil }
                    scalars.append(contentsOf: tail.unicodeScalars)
                    return String(scalars)
                }
                guard byte >= 0x20 else { return nil }
                if byte == UInt8(ascii: "\\") {
                    plain = false
                    guard let head = String(validating: bytes[runStart..<index], as: UTF8.self) else { return nil }
                    scalars.append(contentsOf: head.unicodeScalars)
                    index += 1
                    guard let scalar = escape() else { return nil }
                    scalars.append(scalar)
                    runStart = index
                    continue
                }
                index += 1
            }
            return nil
        }

        /// The escape after a backslash (`index` at the letter); surrogate pairs joined, lone ones refused.
        private mutating func escape() -> Unicode.Scalar? {
            guard index < bytes.count else { return nil }
            let letter = bytes[index]
            index += 1
            switch letter {
            case UInt8(ascii: "\""): return "\""
            case UInt8(ascii: "\\"): return "\\"
            case UInt8(ascii: "/"): return "/"
            case UInt8(ascii: "b"): return "\u{8}"
            case UInt8(ascii: "f"): return "\u{C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                guard let high = hex4() else { return nil }
                if (0xD800...0xDBFF).contains(high) {
                    guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                    return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                }
                return Unicode.Scalar(high)
            default: return nil
            }
        }

        private mutating func hex4() -> UInt32? {
            guard index + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: return nil
                }
                value = value << 4 | digit
                index += 1
            }
            return value
        }

        private mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        private mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }
    }
}
