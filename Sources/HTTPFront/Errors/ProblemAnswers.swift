import Hummingbird

/// The routes this server answers, by template, and their methods: what a 405 names in `Allow`.
/// `RouteTableTests` checks it against the live router (every listed method is routed; the others are 405).
enum RouteTable {
    static let routes: [(template: [String], methods: [HTTPRequest.Method])] = [
        (["healthz"], [.get]), (["readyz"], [.get]), (["metrics"], [.get]), (["openapi.yaml"], [.get]), ([], [.get]),
        (["admin"], [.get]), (["assets", ":file"], [.get]),
        (["admin", "sales"], [.get, .post]),
        (["admin", "sales", ":saleId", "close"], [.post]),
        (["admin", "sales", ":saleId", "shards"], [.get]),
        (["admin", "sales", ":saleId", "rebalance"], [.post]),
        (["sales", ":saleId"], [.get]),
        (["sales", ":saleId", "stock"], [.get]),
        (["sales", ":saleId", "summary"], [.get]),
        (["sales", ":saleId", "orders"], [.post]),
        (["sales", ":saleId", "me"], [.get]),
        (["sales", ":saleId", "live"], [.get]),
        (["orders", ":orderId"], [.get, .delete]),
    ]

    /// The methods routed for `path` (empty: no route has this path).
    static func methods(forPath path: String) -> [HTTPRequest.Method] {
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        for route in routes where route.template.count == components.count {
            let matches = zip(route.template, components).allSatisfy { template, component in
                template.hasPrefix(":") || template == component
            }
            if matches { return route.methods }
        }
        return []
    }
}

/// The problem+json form of the framework's own errors (``FrontMiddleware``): the router's 404 for an unknown
/// path, a 405 with `Allow` for a known path asked with another method, and any other plain HTTP error (a
/// malformed request the framework refused) with its status kept.
enum ProblemAnswers {
    static func problem(for error: HTTPError, request: Request) -> any HTTPResponseError {
        if error.status == .notFound {
            let allowed = RouteTable.methods(forPath: request.uri.path)
            if !allowed.isEmpty, !allowed.contains(request.method) {
                return MethodNotAllowed(allowed: allowed, method: request.method)
            }
            return Problem.notFound("no route for \(request.method) \(request.uri.path.prefix(200))")
        }
        let code = switch error.status.code {
        case 401: "UNAUTHORIZED"
        case 403: "FORBIDDEN"
        case 404: "NOT_FOUND"
        case 429: "RATE_LIMITED"
        case 503: "RETRY_LATER"
        case 400..<500: "INVALID_REQUEST"
        default: "INTERNAL"
        }
        return Problem(status: error.status, code: code, title: error.status.reasonPhrase, detail: error.body ?? error.status.reasonPhrase)
    }
}

/// 405 with `Allow`, as problem+json.
struct MethodNotAllowed: HTTPResponseError {
    let allowed: [HTTPRequest.Method]
    let method: HTTPRequest.Method

    var status: HTTPResponse.Status { .methodNotAllowed }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let methods = allowed.map(\.rawValue).joined(separator: ", ")
        var response = try Problem(status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED", title: "Method not allowed",
                                   detail: "\(method) is not allowed here; use \(methods)").response(from: request, context: context)
        response.headers[.allow] = methods
        return response
    }
}
