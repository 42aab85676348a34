import Foundation
import Hummingbird

/// Cross-origin access for the pages when a CDN or the shop's own domain serves them
/// (`FLASHSALE_CORS_ORIGINS`). It sits outside every other middleware, so errors (problem+json) carry the
/// headers too and a preflight never reaches the router. The token travels in `Authorization`, never in a
/// cookie, so credentials are not allowed.
public struct CrossOriginMiddleware: RouterMiddleware {
    public typealias Context = FlashSaleRequestContext

    /// `*` or exact origins (`scheme://host[:port]`, no path).
    let origins: [String]
    static let allowMethods = "GET, POST, DELETE"
    static let allowHeaders = "Authorization, Content-Type, Idempotency-Key"
    static let exposeHeaders = "Retry-After, Date"
    static let maxAgeSeconds = "600"

    /// The origins in `text` (comma-separated, `*` alone for any); nil when one is not an origin.
    public static func origins(parsing text: String) -> [String]? {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if items == ["*"] { return items }
        guard !items.isEmpty, items.count <= 64 else { return nil }
        for item in items {
            guard let separator = item.range(of: "://") else { return nil }
            let scheme = item[..<separator.lowerBound]
            let authority = item[separator.upperBound...]
            guard scheme == "http" || scheme == "https", !authority.isEmpty, !authority.contains("/"), !authority.contains("*") else { return nil }
        }
        return items
    }

    func allowedOrigin(_ origin: String) -> String? {
        if origins == ["*"] { return "*" }
        return origins.contains(origin) ? origin : nil
    }

    @concurrent public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin] else { return try await next(request, context) }
        let allowed = allowedOrigin(origin)
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            // A preflight: answered here, allowed or not (without the headers the browser refuses the call).
            var headers = HTTPFields()
            headers[.vary] = "Origin"
            if let allowed {
                headers[.accessControlAllowOrigin] = allowed
                headers[.accessControlAllowMethods] = Self.allowMethods
                headers[.accessControlAllowHeaders] = Self.allowHeaders
                headers[.accessControlMaxAge] = Self.maxAgeSeconds
            }
            return Response(status: .noContent, headers: headers)
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            // Problems travel as errors up to the server; the browser needs the headers on them too.
            response = try error.response(from: request, context: context)
        }
        if let allowed {
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers[.accessControlExposeHeaders] = Self.exposeHeaders
            response.headers[.vary] = "Origin"
        }
        return response
    }
}
