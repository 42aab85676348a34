/// A Redis command as binary-safe arguments, stored flat: one byte buffer and one length per argument.
///
/// Two allocations per command whatever the number of arguments, which matters for commit batches of
/// hundreds of orders. Arguments may contain any byte, NUL included.
public struct RedisCommand: Sendable, Hashable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var lengths: [Int] = []

    public init() {}

    public init(_ name: String, _ arguments: String...) {
        append(name)
        for argument in arguments { append(argument) }
    }

    public init(_ arguments: [String]) {
        for argument in arguments { append(argument) }
    }

    public var count: Int { lengths.count }

    public mutating func reserveCapacity(arguments: Int, bytes byteCount: Int) {
        lengths.reserveCapacity(arguments)
        bytes.reserveCapacity(byteCount)
    }

    public mutating func append(_ argument: String) {
        let start = bytes.count
        bytes.append(contentsOf: argument.utf8)
        lengths.append(bytes.count - start)
    }

    /// Appends a decimal integer without allocating an intermediate `String`.
    public mutating func append(_ argument: Int) {
        if argument == 0 {
            bytes.append(UInt8(ascii: "0"))
            lengths.append(1)
            return
        }
        var magnitude = argument.magnitude
        let start = bytes.count
        while magnitude > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        }
        if argument < 0 { bytes.append(UInt8(ascii: "-")) }
        bytes[start...].reverse()
        lengths.append(bytes.count - start)
    }

    public mutating func append(_ argument: Int64) {
        append(Int(argument))
    }

    public mutating func append(bytes argument: [UInt8]) {
        bytes.append(contentsOf: argument)
        lengths.append(argument.count)
    }

    public mutating func append(bytes argument: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: argument)
        lengths.append(argument.count)
    }

    /// Appends every argument of `other`, in order.
    public mutating func append(contentsOf other: RedisCommand) {
        bytes.append(contentsOf: other.bytes)
        lengths.append(contentsOf: other.lengths)
    }

    /// The arguments as separate byte arrays (for logs and tests; not for the hot path).
    public var arguments: [[UInt8]] {
        var result: [[UInt8]] = []
        result.reserveCapacity(lengths.count)
        var offset = 0
        for length in lengths {
            result.append(Array(bytes[offset..<(offset + length)]))
            offset += length
        }
        return result
    }
}
