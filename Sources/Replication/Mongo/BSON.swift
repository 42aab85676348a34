import CMongoc
import Foundation

/// A BSON value as Swift sees it: the types FlashSale writes and reads. Other BSON types that arrive in a
/// reply are kept as ``unsupported(_:)`` with their type code, so reading never fails on them.
public enum BSONValue: Sendable, Hashable {
    case double(Double)
    case string(String)
    case document(BSONDocument)
    case array([BSONValue])
    case bool(Bool)
    case null
    case int32(Int32)
    case int64(Int64)
    /// Milliseconds since the Unix epoch (BSON UTC datetime).
    case date(Int64)
    /// An ObjectId, as 24 hex digits.
    case objectID(String)
    case unsupported(UInt32)

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// Integers of any width, and doubles that hold an integer (drivers and shells differ in what they send).
    public var int64: Int64? {
        switch self {
        case .int32(let value): Int64(value)
        case .int64(let value): value
        case .double(let value) where value.rounded() == value && abs(value) < 9.0e15: Int64(value)
        case .date(let value): value
        default: nil
        }
    }

    public var document: BSONDocument? {
        if case .document(let value) = self { return value }
        return nil
    }

    public var array: [BSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}

extension BSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int64(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// An ordered BSON document (field order matters to MongoDB for commands and sort specifications).
public struct BSONDocument: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(key: String, value: BSONValue)]

    public init() { fields = [] }

    public init(_ fields: [(String, BSONValue)]) {
        self.fields = fields.map { (key: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, BSONValue)...) {
        self.init(elements)
    }

    public subscript(key: String) -> BSONValue? {
        get { fields.first(where: { $0.key == key })?.value }
        set {
            if let index = fields.firstIndex(where: { $0.key == key }) {
                if let newValue { fields[index].value = newValue } else { fields.remove(at: index) }
            } else if let newValue {
                fields.append((key: key, value: newValue))
            }
        }
    }

    public var keys: [String] { fields.map(\.key) }

    public static func == (lhs: BSONDocument, rhs: BSONDocument) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.key)
            hasher.combine(field.value)
        }
    }
}

// MARK: - libbson conversion

extension BSONDocument {
    /// A new `bson_t` holding this document; the caller owns it (`bson_destroy`).
    func makeBSON() -> OpaquePointer {
        let bson = bson_new()!
        append(to: bson)
        return bson
    }

    /// Runs `body` with a temporary `bson_t` of this document.
    func withBSON<Result>(_ body: (OpaquePointer) throws -> Result) rethrows -> Result {
        let bson = makeBSON()
        defer { bson_destroy(bson) }
        return try body(bson)
    }

    fileprivate func append(to bson: OpaquePointer) {
        for field in fields { Self.append(field.value, key: field.key, to: bson) }
    }

    private static func append(_ value: BSONValue, key: String, to bson: OpaquePointer) {
        let appended: Bool
        switch value {
        case .double(let number): appended = bson_append_double(bson, key, -1, number)
        case .string(let text): appended = bson_append_utf8(bson, key, -1, text, Int32(text.utf8.count))
        case .bool(let flag): appended = bson_append_bool(bson, key, -1, flag)
        case .null: appended = bson_append_null(bson, key, -1)
        case .int32(let number): appended = bson_append_int32(bson, key, -1, number)
        case .int64(let number): appended = bson_append_int64(bson, key, -1, number)
        case .date(let milliseconds): appended = bson_append_date_time(bson, key, -1, milliseconds)
        case .objectID(let hex):
            var oid = bson_oid_t()
            if bson_oid_is_valid(hex, hex.utf8.count) {
                bson_oid_init_from_string(&oid, hex)
                appended = bson_append_oid(bson, key, -1, &oid)
            } else {
                appended = bson_append_utf8(bson, key, -1, hex, Int32(hex.utf8.count))
            }
        case .document(let document):
            let child = document.makeBSON()
            defer { bson_destroy(child) }
            appended = bson_append_document(bson, key, -1, child)
        case .array(let elements):
            let child = bson_new()!
            defer { bson_destroy(child) }
            for (index, element) in elements.enumerated() { append(element, key: String(index), to: child) }
            appended = bson_append_array(bson, key, -1, child)
        case .unsupported:
            appended = bson_append_null(bson, key, -1)
        }
        // libbson refuses only documents over 2 GiB or keys with NUL bytes; neither is produced here.
        precondition(appended, "libbson refused field \(key)")
    }

    /// Copies a `bson_t` into Swift values.
    init(bson: OpaquePointer) {
        self.init()
        Self.withIterator { iterator in
            guard bson_iter_init(iterator, bson) else { return }
            self = BSONDocument(reading: iterator)
        }
    }

    private init(reading iterator: OpaquePointer) {
        self.init()
        while bson_iter_next(iterator) {
            let key = String(cString: bson_iter_key(iterator))
            fields.append((key: key, value: Self.read(iterator)))
        }
    }

    /// `bson_iter_t` is 128-byte aligned in libbson (Swift sees it as opaque): give it such storage.
    private static func withIterator<Value>(_ body: (OpaquePointer) -> Value) -> Value {
        var storage: UnsafeMutableRawPointer?
        precondition(posix_memalign(&storage, 128, 256) == 0, "out of memory")
        defer { free(storage) }
        memset(storage!, 0, 256)
        return body(OpaquePointer(storage!))
    }

    private static func read(_ iterator: OpaquePointer) -> BSONValue {
        let type = bson_iter_type(iterator)
        switch type {
        case BSON_TYPE_DOUBLE: return .double(bson_iter_double(iterator))
        case BSON_TYPE_UTF8:
            var length: UInt32 = 0
            guard let pointer = bson_iter_utf8(iterator, &length) else { return .string("") }
            let bytes = UnsafeRawBufferPointer(start: pointer, count: Int(length))
            return .string(String(decoding: bytes, as: UTF8.self))
        case BSON_TYPE_DOCUMENT, BSON_TYPE_ARRAY:
            return withIterator { child -> BSONValue in
                guard bson_iter_recurse(iterator, child) else { return .null }
                let document = BSONDocument(reading: child)
                return type == BSON_TYPE_ARRAY ? .array(document.fields.map(\.value)) : .document(document)
            }
        case BSON_TYPE_BOOL: return .bool(bson_iter_bool(iterator))
        case BSON_TYPE_NULL, BSON_TYPE_UNDEFINED: return .null
        case BSON_TYPE_INT32: return .int32(bson_iter_int32(iterator))
        case BSON_TYPE_INT64: return .int64(bson_iter_int64(iterator))
        case BSON_TYPE_DATE_TIME: return .date(bson_iter_date_time(iterator))
        case BSON_TYPE_OID:
            guard let oid = bson_iter_oid(iterator) else { return .null }
            var text = [CChar](repeating: 0, count: 25)
            bson_oid_to_string(oid, &text)
            return .objectID(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default: return .unsupported(type.rawValue)
        }
    }
}

extension BSONDocument {
    /// Frees a `bson_t` from ``makeBSON()`` (for callers that do not import CMongoc).
    static func destroy(_ bson: OpaquePointer) {
        bson_destroy(bson)
    }
}
