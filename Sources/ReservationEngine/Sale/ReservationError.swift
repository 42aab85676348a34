/// Why a reservation (or another sale operation) was refused, with the stable code of the HTTP contract.
public struct ReservationError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }

        public static let invalidRequest = Code("INVALID_REQUEST")
        public static let notFound = Code("NOT_FOUND")
        public static let saleExists = Code("SALE_EXISTS")
        public static let saleNotStarted = Code("SALE_NOT_STARTED")
        public static let saleEnded = Code("SALE_ENDED")
        public static let soldOut = Code("SOLD_OUT")
        public static let insufficientStock = Code("INSUFFICIENT_STOCK")
        public static let limitExceeded = Code("LIMIT_EXCEEDED")
        public static let retryLater = Code("RETRY_LATER")

        public var description: String { rawValue }
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code): \(detail)" }
}
