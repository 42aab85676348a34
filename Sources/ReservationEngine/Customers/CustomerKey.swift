/// A customer id as the bytes it is. Customer ids are opaque UTF-8 (the token's `sub`): they are compared
/// and hashed as bytes everywhere, never with Swift `String ==`, which equates canonically equivalent
/// Unicode ("jos\u{e9}" and "jose\u{301}", Ohm and Omega, Hangul jamo and syllables would be one customer).
public struct CustomerKey: Hashable, Sendable, CustomStringConvertible {
    public let id: String

    public init(_ id: String) {
        self.id = id
    }

    public static func == (lhs: CustomerKey, rhs: CustomerKey) -> Bool {
        lhs.id.utf8.elementsEqual(rhs.id.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        var id = id
        id.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        hasher.combine(id.utf8.count)
    }

    public var description: String { id }

    /// Whether two customer ids are the same customer (byte for byte).
    public static func same(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.elementsEqual(rhs.utf8)
    }
}
