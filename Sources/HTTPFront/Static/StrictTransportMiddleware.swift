import HTTPTypes
import Hummingbird

/// `Strict-Transport-Security` on every answer when the front speaks TLS: a browser that has been here once
/// never tries plain HTTP for a year (no downgrade by a network in the middle). Not sent over plain HTTP, where
/// RFC 6797 says browsers ignore it, nor when TLS ends at a proxy (the proxy sends it).
struct StrictTransportMiddleware: RouterMiddleware {
    typealias Context = FlashSaleRequestContext

    static let field = HTTPField.Name("Strict-Transport-Security")!
    static let value = "max-age=31536000"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            var response = try await next(request, context)
            response.headers[Self.field] = Self.value
            return response
        } catch let error as any HTTPResponseError {
            var response = try error.response(from: request, context: context)
            response.headers[Self.field] = Self.value
            return response
        }
    }
}
