import Foundation
import Hummingbird
import ReservationEngine

/// An RFC 9457 problem (`application/problem+json`) with FlashSale's stable `code`.
public struct Problem: Error, HTTPResponseError, Sendable, CustomStringConvertible {
    public let status: HTTPResponse.Status
    public let code: String
    public let title: String
    public let detail: String
    public let retryAfterSeconds: Int?

    public init(status: HTTPResponse.Status, code: String, title: String, detail: String, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var headers: HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        headers[.cacheControl] = "no-store"
        if let retryAfterSeconds { headers[.retryAfter] = String(max(1, retryAfterSeconds)) }
        return headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try body())))
    }

    /// The problem+json document.
    func body() throws -> Data {
        let body: [String: Any] = [
            "type": "https://flashsale.dev/problems/\(code.lowercased().replacingOccurrences(of: "_", with: "-"))",
            "title": title, "status": status.code, "detail": detail, "code": code,
        ]
        return try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    public var description: String { "\(status.code) \(code): \(detail)" }

    // MARK: The codes of the HTTP contract

    public static func invalidRequest(_ detail: String) -> Problem {
        Problem(status: .badRequest, code: "INVALID_REQUEST", title: "Invalid request", detail: detail)
    }
    public static func bodyTooLarge() -> Problem {
        Problem(status: .contentTooLarge, code: "INVALID_REQUEST", title: "Request body too large", detail: "the body must be at most 16384 bytes")
    }
    public static func unauthorized(_ detail: String) -> Problem {
        Problem(status: .unauthorized, code: "UNAUTHORIZED", title: "Unauthorized", detail: detail)
    }
    public static func forbidden(_ detail: String) -> Problem {
        Problem(status: .forbidden, code: "FORBIDDEN", title: "Forbidden", detail: detail)
    }
    public static func notFound(_ detail: String) -> Problem {
        Problem(status: .notFound, code: "NOT_FOUND", title: "Not found", detail: detail)
    }
    public static func rateLimited(retryAfterSeconds: Int) -> Problem {
        Problem(status: .tooManyRequests, code: "RATE_LIMITED", title: "Too many requests",
                detail: "slow down and retry after \(retryAfterSeconds) s", retryAfterSeconds: retryAfterSeconds)
    }

    /// The HTTP form of an engine refusal.
    public init(_ error: ReservationError, retryAfterSeconds: Int? = nil) {
        let (status, title): (HTTPResponse.Status, String) = switch error.code {
        case .invalidRequest: (.badRequest, "Invalid request")
        case .notFound: (.notFound, "Not found")
        case .saleExists: (.conflict, "Sale exists")
        case .saleNotStarted: (.conflict, "Sale not started")
        case .saleEnded: (.conflict, "Sale ended")
        case .soldOut: (.conflict, "Sold out")
        case .insufficientStock: (.conflict, "Insufficient stock")
        case .limitExceeded: (.conflict, "Limit exceeded")
        case .retryLater: (.serviceUnavailable, "Retry later")
        default: (.internalServerError, "Error")
        }
        self.init(status: status, code: error.code.rawValue, title: title, detail: error.detail,
                  retryAfterSeconds: retryAfterSeconds ?? (error.code == .retryLater ? 1 : nil))
    }
}
