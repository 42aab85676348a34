import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Replication
import ReservationEngine
import Testing
import TestSupport

/// The routes behind the operator console, the pages themselves and cross-origin access.
@Suite("Console routes, pages and CORS against the live server and a real ledger")
struct ConsoleAPITests {
    // GET /admin/sales pages through every sale, latest start first, with each page's cursor; a status
    // filter keeps only the matching ones; a bad cursor, status or limit is INVALID_REQUEST.
    @Test func listsSalesPaged() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            // Seven sales: starts 1..7 hours ahead (scheduled), and one open now.
            for hour in 1...7 {
                try await fixture.createSale(client, id: "later-\(hour)", stock: 3, startsIn: Double(hour) * 3_600)
            }
            try await fixture.createSale(client, id: "now", stock: 3)
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let query = "/admin/sales?limit=3" + (cursor.map { "&cursor=" + $0 } ?? "")
                try await client.execute(uri: query, method: .get, headers: fixture.headers("ops", admin: true)) { response in
                    #expect(response.status == .ok)
                    let body = json(response)
                    let sales = try #require(body["sales"] as? [[String: Any]])
                    #expect(sales.count <= 3)
                    seen += sales.compactMap { $0["id"] as? String }
                    cursor = body["next"] as? String
                    #expect(body.keys.contains("next"), "next is always present (null on the last page)")
                }
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == (1...7).reversed().map { "later-\($0)" } + ["now"])
            #expect(pages == 3)

            try await client.execute(uri: "/admin/sales?status=open", method: .get, headers: fixture.headers("ops", admin: true)) { response in
                let sales = json(response)["sales"] as? [[String: Any]] ?? []
                #expect(sales.map { $0["id"] as? String } == ["now"])
                #expect(sales.first?["status"] as? String == "open")
                #expect(json(response)["next"] is NSNull)
            }
            for bad in ["cursor=x", "cursor=12.bad%20id", "status=sleeping", "limit=0", "limit=101"] {
                try await client.execute(uri: "/admin/sales?" + bad, method: .get, headers: fixture.headers("ops", admin: true)) {
                    expectProblem($0, .badRequest, "INVALID_REQUEST")
                }
            }
            try await client.execute(uri: "/admin/sales", method: .get, headers: fixture.headers("alice")) { expectProblem($0, .forbidden, "FORBIDDEN") }
        }
    }

    // An operator's close: 200 with closedReason `closed`, the leases revoked and the waitlist left
    // unserved in the ledger, orders refused with SALE_ENDED, a final summary, 409 on a second close.
    @Test func operatorClosesASale() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "early", stock: 5)
            try await client.execute(uri: "/sales/early/orders", method: .post, headers: fixture.headers("bob"), body: ByteBuffer(string: HTTPFixture.orderBody)) {
                #expect($0.status == .created)
            }
            try await client.execute(uri: "/admin/sales/early/close", method: .post, headers: fixture.headers("alice")) { expectProblem($0, .forbidden, "FORBIDDEN") }
            try await client.execute(uri: "/admin/sales/early/close", method: .post, headers: fixture.headers("ops", admin: true)) { response in
                #expect(response.status == .ok)
                let body = json(response)
                #expect(body["status"] as? String == "closed" && body["closedReason"] as? String == "closed")
                #expect(body["sold"] as? Int == 1)
            }
            let ledger = try fixture.ledger("early")
            #expect(ledger.status == .closed && ledger.closedReason == .closed)
            #expect(ledger.leases.isEmpty && ledger.pool == 4 && ledger.sold == 1 && ledger.invariantHolds)
            try await client.execute(uri: "/admin/sales/early/close", method: .post, headers: fixture.headers("ops", admin: true)) {
                expectProblem($0, .conflict, "SALE_ENDED")
            }
            try await client.execute(uri: "/admin/sales/missing/close", method: .post, headers: fixture.headers("ops", admin: true)) {
                expectProblem($0, .notFound, "NOT_FOUND")
            }
            try await client.execute(uri: "/sales/early/orders", method: .post, headers: fixture.headers("carol"), body: ByteBuffer(string: HTTPFixture.orderBody)) {
                expectProblem($0, .conflict, "SALE_ENDED")
            }
            // The reconciler stores the final summary, as for any close.
            var summary: [String: Any] = [:]
            for _ in 0..<100 {
                try await client.execute(uri: "/sales/early/summary", method: .get, headers: fixture.headers("ops", admin: true)) { summary = json($0) }
                if summary["final"] as? Bool == true { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(summary["final"] as? Bool == true && summary["closedReason"] as? String == "closed" && summary["sold"] as? Int == 1)
            try await client.execute(uri: "/admin/sales/early/shards", method: .get, headers: fixture.headers("ops", admin: true)) { response in
                let body = json(response)
                #expect(body["outboxBacklog"] as? Int == 1, "no MongoDB here: the confirmed order waits in the outbox")
                #expect((body["leases"] as? [Any])?.isEmpty == true)
            }
        }
    }

    // The shopper page, the console (with its redirect) and their assets, cacheable with a strict policy;
    // a pages directory replaces the built-in copies.
    @Test func servesPages() async throws {
        let fixture = try HTTPFixture()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pages-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await fixture.components().application.test(.live) { client in
            for (uri, type) in [("/", "text/html"), ("/admin/", "text/html"), ("/assets/sale.js", "text/javascript"),
                                ("/assets/console.js", "text/javascript"), ("/assets/flashsale.js", "text/javascript"), ("/assets/flashsale.css", "text/css")] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .ok, "\(uri)")
                    #expect(response.headers[.contentType]?.hasPrefix(type) == true, "\(uri)")
                    #expect(response.headers[.eTag] != nil && response.headers[.xContentTypeOptions] == "nosniff")
                    if type == "text/html" {
                        #expect(response.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
                        #expect(response.headers[.cacheControl] == "no-cache")
                    }
                }
            }
            try await client.execute(uri: "/admin", method: .get) { response in
                #expect(response.status == .permanentRedirect && response.headers[.location] == "/admin/")
            }
            try await client.execute(uri: "/assets/../Package.swift", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/assets/secrets.txt", method: .get) { expectProblem($0, .notFound, "NOT_FOUND") }
        }
        try Data("<html>restyled</html>".utf8).write(to: directory.appendingPathComponent("sale.html"))
        let restyled = fixture.components { $0.pagesDirectory = directory.path }
        try await restyled.application.test(.live) { client in
            try await client.execute(uri: "/", method: .get) { #expect(String(buffer: $0.body) == "<html>restyled</html>") }
            // Files the directory lacks keep their built-in copies.
            try await client.execute(uri: "/admin/", method: .get) { #expect(String(buffer: $0.body).contains("<html")) }
        }
    }

    // Listed origins get CORS headers on answers and errors alike, and a preflight answer; others none.
    @Test func crossOriginAccess() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components { $0.corsOrigins = ["https://shop.example"] }.application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "cors", stock: 5)
            var preflight = HTTPFields()
            preflight[.origin] = "https://shop.example"
            preflight[.accessControlRequestMethod] = "POST"
            try await client.execute(uri: "/sales/cors/orders", method: .options, headers: preflight) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.accessControlAllowOrigin] == "https://shop.example")
                #expect(response.headers[.accessControlAllowHeaders]?.contains("Idempotency-Key") == true)
            }
            var headers = fixture.headers("bob")
            headers[.origin] = "https://shop.example"
            try await client.execute(uri: "/sales/cors/stock", method: .get, headers: headers) { response in
                #expect(response.status == .ok && response.headers[.accessControlAllowOrigin] == "https://shop.example")
                #expect(response.headers[.accessControlExposeHeaders]?.contains("Retry-After") == true)
            }
            headers[.authorization] = "Bearer forged"
            try await client.execute(uri: "/sales/cors/stock", method: .get, headers: headers) { response in
                expectProblem(response, .unauthorized, "UNAUTHORIZED")
                #expect(response.headers[.accessControlAllowOrigin] == "https://shop.example")
            }
            preflight[.origin] = "https://evil.example"
            try await client.execute(uri: "/sales/cors/orders", method: .options, headers: preflight) { response in
                #expect(response.headers[.accessControlAllowOrigin] == nil)
            }
        }
        #expect(CrossOriginMiddleware.origins(parsing: "*") == ["*"])
        #expect(CrossOriginMiddleware.origins(parsing: "https://a.example, http://b.example:8080") == ["https://a.example", "http://b.example:8080"])
        for bad in ["", "shop.example", "https://a.example/path", "ftp://a.example", "https://*.example"] {
            #expect(CrossOriginMiddleware.origins(parsing: bad) == nil, "\(bad)")
        }
    }
}
