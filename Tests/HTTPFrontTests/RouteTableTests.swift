import Foundation
@testable import HTTPFront
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport

@Suite("Unknown routes and methods answer problem+json")
struct RouteTableTests {
    // An unknown path is a 404 problem; a known path with another method is a 405 problem naming the
    // allowed methods in `Allow`; every method the table lists is routed (never 404/405).
    @Test func unknownPathsAndMethods() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            try await client.execute(uri: "/nowhere/at/all", method: .get) { expectProblem($0, .notFound, "NOT_FOUND") }
            try await client.execute(uri: "/sales/abc/orders", method: .get, headers: fixture.headers("a")) { response in
                expectProblem(response, .methodNotAllowed, "METHOD_NOT_ALLOWED")
                #expect(response.headers[.allow] == "POST")
            }
            try await client.execute(uri: "/orders/x.o1", method: .put, headers: fixture.headers("a")) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, DELETE")
            }
            try await client.execute(uri: "/healthz", method: .post) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET")
            }
            for route in RouteTable.routes where !route.template.contains(where: { $0 == "live" }) {
                let path = "/" + route.template.map { $0 == ":saleId" ? "nosuchsale" : ($0 == ":orderId" ? "nosuchsale.o0000000000000000000000000" : $0) }.joined(separator: "/")
                for method in route.methods {
                    try await client.execute(uri: path, method: method, headers: fixture.headers("root", admin: true), body: ByteBuffer(string: "{}")) { response in
                        #expect(response.status != .methodNotAllowed, "\(method) \(path) is routed")
                        if response.status == .notFound { #expect(json(response)["code"] as? String == "NOT_FOUND", "\(method) \(path)") }
                    }
                }
            }
            // Counted with the status the client got: the three 405s above are 405s, not the router's 404.
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"flashsale_http_requests_total{route="NotFound",status="405"} 3"#), "\(text)")
                #expect(text.contains(#"flashsale_http_requests_total{route="NotFound",status="404"} 1"#), "\(text)")
            }
        }
    }
}
