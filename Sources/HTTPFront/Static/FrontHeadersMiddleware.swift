import HTTPTypes
import Hummingbird

/// Headers on every answer, errors included:
/// - `Strict-Transport-Security` when the front speaks TLS: a browser that has been here once never tries plain
///   HTTP for a year (no downgrade by a network in the middle). Not sent over plain HTTP, where RFC 6797 says
///   browsers ignore it, nor when TLS ends at a proxy (the proxy sends it).
/// - `Connection: close` while the instance drains (``DrainState``): a keep-alive client, a proxy's pool
///   included, opens its next request elsewhere instead of on a connection about to close.
struct FrontHeadersMiddleware: RouterMiddleware {
    typealias Context = FlashSaleRequestContext

    static let strictTransportSecurity = HTTPField.Name("Strict-Transport-Security")!
    static let oneYear = "max-age=31536000"

    let strictTransport: Bool
    let drain: DrainState

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        if strictTransport { response.headers[Self.strictTransportSecurity] = Self.oneYear }
        if drain.isDraining { response.headers[.connection] = "close" }
        return response
    }
}
