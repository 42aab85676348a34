/// A scheduled sale as the retailer defines it. Times are milliseconds since the Unix epoch.
public struct SaleDefinition: Sendable, Hashable, Codable {
    public static let stockRange = 1...10_000_000
    public static let perCustomerLimitRange = 1...100
    public static let nameLengthRange = 1...200
    public static let maxDurationMilliseconds: Int64 = 604_800_000

    public var id: String
    public var name: String
    public var stock: Int
    public var startsAtMilliseconds: Int64
    public var endsAtMilliseconds: Int64
    public var perCustomerLimit: Int

    public init(id: String, name: String, stock: Int, startsAtMilliseconds: Int64, endsAtMilliseconds: Int64, perCustomerLimit: Int = 2) {
        self.id = id
        self.name = name
        self.stock = stock
        self.startsAtMilliseconds = startsAtMilliseconds
        self.endsAtMilliseconds = endsAtMilliseconds
        self.perCustomerLimit = perCustomerLimit
    }

    /// Checks every field against the HTTP contract; the error's detail names the first bad field.
    public func validate() throws(ReservationError) {
        guard Self.isValidID(id) else {
            throw ReservationError(.invalidRequest, "id must match [A-Za-z0-9_-]{1,64}")
        }
        guard Self.nameLengthRange.contains(name.count) else {
            throw ReservationError(.invalidRequest, "name must be 1 to 200 characters")
        }
        guard Self.stockRange.contains(stock) else {
            throw ReservationError(.invalidRequest, "stock must be between 1 and 10000000")
        }
        guard Self.perCustomerLimitRange.contains(perCustomerLimit) else {
            throw ReservationError(.invalidRequest, "perCustomerLimit must be between 1 and 100")
        }
        guard endsAtMilliseconds > startsAtMilliseconds else {
            throw ReservationError(.invalidRequest, "endsAt must be after startsAt")
        }
        guard endsAtMilliseconds - startsAtMilliseconds <= Self.maxDurationMilliseconds else {
            throw ReservationError(.invalidRequest, "a sale lasts at most 604800 seconds")
        }
    }

    /// `[A-Za-z0-9_-]{1,64}`: safe inside Redis keys, URLs and logs.
    public static func isValidID(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard (1...64).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }
}
