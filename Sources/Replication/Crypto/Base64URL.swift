/// Base64url without padding (RFC 4648 §5), on bytes: no Foundation strings, no rewriting of alphabets.
/// Used on the hot path by the token verifier and the field cipher.
public enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// 0...63 for an alphabet byte, 0xFF otherwise.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// The encoding of `bytes`, without padding.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        if let encoded = bytes.withContiguousStorageIfAvailable({ encode(buffer: $0) }) { return encoded }
        return Array(bytes).withUnsafeBufferPointer { encode(buffer: $0) }
    }

    /// ``encode(_:)`` on contiguous bytes.
    public static func encode(buffer bytes: UnsafeBufferPointer<UInt8>) -> String {
        encode(buffer: bytes, after: UnsafeBufferPointer(start: nil, count: 0))
    }

    /// `prefix` (ASCII) followed by the encoding of `bytes`, written into one new string.
    public static func encode(buffer bytes: UnsafeBufferPointer<UInt8>, after prefix: UnsafeBufferPointer<UInt8>) -> String {
        assert(prefix.allSatisfy { $0 < 0x80 }, "an ASCII prefix")
        let count = bytes.count
        let length = prefix.count + (count * 4 + 2) / 3
        return String(unsafeUninitializedCapacity: length) { output in
            var written = prefix.count
            if let start = prefix.baseAddress { output.baseAddress!.initialize(from: start, count: prefix.count) }
            var iterator = bytes.makeIterator()
            alphabet.withUnsafeBufferPointer { alphabet in
                while let first = iterator.next() {
                    let second = iterator.next()
                    let third = iterator.next()
                    let block = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
                    output[written] = alphabet[Int(block >> 18 & 63)]
                    output[written + 1] = alphabet[Int(block >> 12 & 63)]
                    written += 2
                    if second != nil {
                        output[written] = alphabet[Int(block >> 6 & 63)]
                        written += 1
                    }
                    if third != nil {
                        output[written] = alphabet[Int(block & 63)]
                        written += 1
                    }
                }
            }
            precondition(written == length, "base64url length")
            return written
        }
    }

    /// The bytes `text` encodes; nil for a character outside the URL-safe alphabet, padding, or an
    /// impossible length (a remainder of one character) or non-canonical trailing bits.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        // One witness call, then the non-generic loop (a generic loop across the module boundary is not
        // specialized: every byte went through a protocol witness, 13% of an order's CPU in the profile).
        if let decoded = text.withContiguousStorageIfAvailable({ decode(buffer: $0) }) { return decoded }
        return Array(text).withUnsafeBufferPointer { decode(buffer: $0) }
    }

    /// ``decode(_:)`` on contiguous bytes.
    public static func decode(buffer text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = text.count
        guard count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        let valid = values.withUnsafeBufferPointer { values -> Bool in
            for byte in text {
                let value = values[Int(byte)]
                guard value != 0xFF else { return false }
                accumulator = accumulator << 6 | UInt32(value)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                    accumulator &= (1 << UInt32(bits)) - 1
                }
            }
            return true
        }
        // The bits left over must be zero: one encoding per byte string.
        guard valid, accumulator == 0 else { return nil }
        return output
    }
}
