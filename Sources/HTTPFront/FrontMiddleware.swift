import HTTPTypes
import Hummingbird
import Logging

/// The one middleware every request passes (with ``CrossOriginMiddleware`` outside it when configured). It does
/// in one layer what four did: each layer of Hummingbird's middleware chain costs a request about five task
/// switches (the responder, its closure, the middleware's own entry), and an order took 76 of them
/// (BENCHMARKS.md, "Task switches per order").
///
/// In order:
/// - **The answer to an error** is problem+json (API.md): an engine refusal or a bad request as thrown, the
///   router's own 404 for an unknown path, a 405 with `Allow` for a known path asked with another method, any
///   other plain HTTP error (a malformed request the framework refused) with its status kept, and any other error
///   a 500 `INTERNAL` (logged with its cause).
/// - **Counted and timed** by route template, method and status (from the head's arrival at the router), and one
///   debug log line with the request's method, path (never the query: it may hold a token) and status. Both see
///   the status the client gets.
/// - **Headers on every answer**, errors included:
///   - `Strict-Transport-Security` when the front speaks TLS: a browser that has been here once never tries plain
///     HTTP for a year (no downgrade by a network in the middle). Not sent over plain HTTP, where RFC 6797 says
///     browsers ignore it, nor when TLS ends at a proxy (the proxy sends it).
///   - `Connection: close` while the instance drains (``DrainState``): a keep-alive client, a proxy's pool
///     included, opens its next request elsewhere instead of on a connection about to close.
struct FrontMiddleware: RouterMiddleware {
    typealias Context = FlashSaleRequestContext

    static let strictTransportSecurity = HTTPField.Name("Strict-Transport-Security")!
    static let oneYear = "max-age=31536000"

    let metrics: FlashSaleMetrics
    let strictTransport: Bool
    let drain: DrainState

    @concurrent func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = try Self.answer(to: error, request: request, context: context)
        }
        finish(&response, request: request, context: context, start: start)
        return response
    }

    /// The answer to an error a route or the router threw. (The synchronous work is in functions not inlined into
    /// `handle`, so its frame stays small in every connection's task: see APIRoutes.PlacedOrder.)
    @inline(never)
    static func answer(to error: any Error, request: Request, context: Context) throws -> Response {
        let answer: any HTTPResponseError
        switch error {
        case let error as HTTPError:
            answer = ProblemAnswers.problem(for: error, request: request)
        case let error as any HTTPResponseError:
            answer = error
        default:
            context.logger.error("request failed", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "error": "\(error)"])
            answer = Problem(status: .internalServerError, code: "INTERNAL", title: "Internal error", detail: "the request failed on the server")
        }
        return try answer.response(from: request, context: context)
    }

    /// Counts, times and logs the answer, and adds the headers every answer carries.
    @inline(never)
    func finish(_ response: inout Response, request: Request, context: Context, start: ContinuousClock.Instant) {
        let status = Int(response.status.code)
        metrics.request(route: context.endpointPath ?? "unmatched", method: request.method, status: status, duration: .now - start)
        context.logger.debug("request", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(status)"])
        if strictTransport { response.headers[Self.strictTransportSecurity] = Self.oneYear }
        if drain.isDraining { response.headers[.connection] = "close" }
    }
}
