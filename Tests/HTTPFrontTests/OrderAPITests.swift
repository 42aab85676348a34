import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("HTTP API against the live server and a real ledger")
struct OrderAPITests {
    // Missing, malformed, forged and expired tokens are 401; a customer token on an admin route is 403.
    @Test func authentication() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "auth", stock: 5)
            try await client.execute(uri: "/sales/auth", method: .get) { expectProblem($0, .unauthorized, "UNAUTHORIZED") }
            var headers = HTTPFields()
            for value in ["Bearer", "Bearer not.a.token", "Basic abc", "Bearer " + BearerTokens(secret: "some-other-secret-value").sign(subject: "eve", admin: true, expiresAt: Date().addingTimeInterval(600)),
                          "Bearer " + fixture.tokens.sign(subject: "late", admin: false, expiresAt: Date().addingTimeInterval(-31))] {
                headers[.authorization] = value
                try await client.execute(uri: "/sales/auth", method: .get, headers: headers) { expectProblem($0, .unauthorized, "UNAUTHORIZED") }
            }
            // Within the 30 s leeway an expired token still works.
            headers[.authorization] = "Bearer " + fixture.tokens.sign(subject: "skewed", admin: false, expiresAt: Date().addingTimeInterval(-10))
            try await client.execute(uri: "/sales/auth", method: .get, headers: headers) { #expect($0.status == .ok) }
            try await client.execute(uri: "/admin/sales/auth/shards", method: .get, headers: fixture.headers("alice")) { expectProblem($0, .forbidden, "FORBIDDEN") }
            try await client.execute(uri: "/admin/sales", method: .post, headers: fixture.headers("alice"), body: ByteBuffer(string: "{}")) { expectProblem($0, .forbidden, "FORBIDDEN") }
        }
    }

    // Every bad input is INVALID_REQUEST (413 for a big body), and none of them changes the ledger.
    @Test func badInputReservesNothing() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "bad", stock: 10, limit: 2)
            let before = try fixture.ledger("bad")
            let bodies: [(String, HTTPResponse.Status)] = [
                ("", .badRequest), ("not json", .badRequest), ("[]", .badRequest), (#"{"quantity":"1"}"#, .badRequest),
                (#"{"quantity":1}"#, .badRequest), (#"{"quantity":1.5,"delivery":{"name":"a","phone":"5550100","address":"b"}}"#, .badRequest),
                (#"{"quantity":0,"delivery":{"name":"a","phone":"5550100","address":"b"}}"#, .badRequest),
                (#"{"quantity":3,"delivery":{"name":"a","phone":"5550100","address":"b"}}"#, .badRequest),
                (#"{"quantity":1,"delivery":{"name":"","phone":"5550100","address":"b"}}"#, .badRequest),
                (#"{"quantity":1,"delivery":{"name":"a","phone":"123","address":"b"}}"#, .badRequest),
                (#"{"quantity":1,"delivery":{"name":"a","phone":"5550100","address":"\#(String(repeating: "x", count: 501))"}}"#, .badRequest),
                (#"{"quantity":1,"delivery":{"name":"\#(String(repeating: "n", count: 101))","phone":"5550100","address":"b"}}"#, .badRequest),
                (#"{"quantity":1,"delivery":null}"#, .badRequest),
                (#"{"quantity":1,"delivery":{"name":"a","phone":"5550100","address":"b","pad":"\#(String(repeating: "p", count: 17_000))"}}"#, .contentTooLarge),
            ]
            for (body, status) in bodies {
                try await client.execute(uri: "/sales/bad/orders", method: .post, headers: fixture.headers("bob"), body: ByteBuffer(string: body)) { response in
                    expectProblem(response, status, "INVALID_REQUEST")
                }
            }
            var invalidUTF8 = ByteBuffer(string: #"{"quantity":1,"delivery":{"name":""#)
            invalidUTF8.writeBytes([0xff, 0xfe])
            invalidUTF8.writeString(#"","phone":"5550100","address":"b"}}"#)
            try await client.execute(uri: "/sales/bad/orders", method: .post, headers: fixture.headers("bob"), body: invalidUTF8) { expectProblem($0, .badRequest, "INVALID_REQUEST") }
            var longKey = fixture.headers("bob")
            longKey[HTTPField.Name("Idempotency-Key")!] = String(repeating: "k", count: 65)
            try await client.execute(uri: "/sales/bad/orders", method: .post, headers: longKey, body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .badRequest, "INVALID_REQUEST") }
            try await client.execute(uri: "/sales/no-such-sale/orders", method: .post, headers: fixture.headers("bob"), body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .notFound, "NOT_FOUND") }
            try await client.execute(uri: "/sales/bad%20id/stock", method: .get, headers: fixture.headers("bob")) { expectProblem($0, .notFound, "NOT_FOUND") }

            let after = try fixture.ledger("bad")
            #expect(after.sold == before.sold && after.sold == 0)
            #expect(try LedgerFixture.orders(on: fixture.redis, saleID: "bad").isEmpty)
            // Unknown fields are ignored.
            let extra = #"{"quantity":1,"color":"red","delivery":{"name":"a","phone":"5550100","address":"b","floor":3}}"#
            try await client.execute(uri: "/sales/bad/orders", method: .post, headers: fixture.headers("bob"), body: ByteBuffer(string: extra)) { #expect($0.status == .created) }
        }
    }

    // Creating sales: validation of every field, SALE_EXISTS, a generated id, and what GET answers.
    @Test func createSaleValidation() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            let admin = fixture.headers("root", admin: true)
            let now = ISO8601DateFormatter().string(from: Date())
            let later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(60))
            let bad = [
                #"{"name":"x","stock":1,"startsAt":"\#(now)"}"#,
                #"{"name":"x","stock":1,"startsAt":"\#(now)","endsAt":"\#(later)","durationSeconds":5}"#,
                #"{"name":"x","stock":0,"startsAt":"\#(now)","durationSeconds":5}"#,
                #"{"name":"x","stock":10000001,"startsAt":"\#(now)","durationSeconds":5}"#,
                #"{"name":"","stock":1,"startsAt":"\#(now)","durationSeconds":5}"#,
                #"{"name":"x","stock":1,"startsAt":"tomorrow","durationSeconds":5}"#,
                #"{"name":"x","stock":1,"startsAt":"\#(later)","endsAt":"\#(now)"}"#,
                #"{"name":"x","stock":1,"startsAt":"\#(now)","durationSeconds":604801}"#,
                #"{"name":"x","stock":1,"startsAt":"\#(now)","durationSeconds":5,"perCustomerLimit":101}"#,
                #"{"id":"has space","name":"x","stock":1,"startsAt":"\#(now)","durationSeconds":5}"#,
            ]
            for body in bad {
                try await client.execute(uri: "/admin/sales", method: .post, headers: admin, body: ByteBuffer(string: body)) { expectProblem($0, .badRequest, "INVALID_REQUEST") }
            }
            try await fixture.createSale(client, id: "dup", stock: 3)
            let again = #"{"id":"dup","name":"x","stock":1,"startsAt":"\#(now)","durationSeconds":5}"#
            try await client.execute(uri: "/admin/sales", method: .post, headers: admin, body: ByteBuffer(string: again)) { expectProblem($0, .conflict, "SALE_EXISTS") }
            let generated = #"{"name":"Generated","stock":7,"startsAt":"\#(now)","endsAt":"\#(later)"}"#
            try await client.execute(uri: "/admin/sales", method: .post, headers: admin, body: ByteBuffer(string: generated)) { response in
                #expect(response.status == .created)
                let body = json(response)
                #expect((body["id"] as? String)?.hasPrefix("sale-") == true)
                #expect(body["perCustomerLimit"] as? Int == 2 && body["stock"] as? Int == 7 && body["status"] as? String == "open")
            }
            try await client.execute(uri: "/sales/dup", method: .get, headers: fixture.headers("carol")) { response in
                let body = json(response)
                #expect(response.status == .ok)
                #expect(body["id"] as? String == "dup" && body["available"] as? Int == 3 && body["sold"] as? Int == 0)
                for key in ["name", "startsAt", "endsAt", "perCustomerLimit", "status"] { #expect(body[key] != nil, "\(key)") }
            }
        }
    }

    // The order path end to end: 201, idempotent replay, LIMIT_EXCEEDED, /me, owner-only reads, cancel.
    @Test func ordersAndCancellation() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "phones", stock: 5, limit: 2)
            var keyed = fixture.headers("alice")
            keyed[HTTPField.Name("Idempotency-Key")!] = "checkout-42"
            var orderID = ""
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: keyed, body: HTTPFixture.orderBody(quantity: 2)) { response in
                #expect(response.status == .created)
                let body = json(response)
                orderID = body["orderId"] as? String ?? ""
                #expect(body["status"] as? String == "confirmed" && body["quantity"] as? Int == 2 && body["customerId"] as? String == "alice")
                #expect(body["saleId"] as? String == "phones" && (body["createdAt"] as? String)?.hasSuffix("Z") == true)
            }
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: keyed, body: HTTPFixture.orderBody(quantity: 2)) { response in
                #expect(response.status == .created)
                #expect(json(response)["orderId"] as? String == orderID, "the same key answers the first order")
            }
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: fixture.headers("alice"), body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .conflict, "LIMIT_EXCEEDED") }
            #expect(try fixture.ledger("phones").sold == 2)

            try await client.execute(uri: "/sales/phones/me", method: .get, headers: fixture.headers("alice")) { response in
                let body = json(response)
                #expect(body["purchased"] as? Int == 2 && (body["orders"] as? [Any])?.count == 1)
                #expect(body.keys.contains("waitlist") && body["waitlist"] is NSNull)
            }
            try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers("alice")) { response in
                #expect(response.status == .ok)
                #expect((json(response)["delivery"] as? [String: Any])?["name"] as? String == "Ada", "the owner sees the delivery")
            }
            try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers("mallory")) { expectProblem($0, .notFound, "NOT_FOUND") }
            try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers("root", admin: true)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/orders/phones.o0000", method: .get, headers: fixture.headers("alice")) { expectProblem($0, .notFound, "NOT_FOUND") }
            try await client.execute(uri: "/orders/\(orderID)", method: .delete, headers: fixture.headers("mallory")) { expectProblem($0, .notFound, "NOT_FOUND") }
            #expect(try fixture.ledger("phones").sold == 2)
            try await client.execute(uri: "/orders/\(orderID)", method: .delete, headers: fixture.headers("alice")) { response in
                #expect(response.status == .ok)
                #expect(json(response)["status"] as? String == "cancelled" && json(response)["orderId"] as? String == orderID)
            }
            let snapshot = try fixture.ledger("phones")
            #expect(snapshot.sold == 0 && snapshot.invariantHolds)
            try await client.execute(uri: "/sales/phones/me", method: .get, headers: fixture.headers("alice")) { response in
                let body = json(response)
                #expect(body["purchased"] as? Int == 0)
                #expect(((body["orders"] as? [[String: Any]])?.first?["status"] as? String) == "cancelled", "cancelled orders are listed")
            }
            // After cancelling, alice may buy again.
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: fixture.headers("alice"), body: HTTPFixture.orderBody(quantity: 2)) { #expect($0.status == .created) }
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: fixture.headers("bob"), body: HTTPFixture.orderBody(quantity: 2)) { #expect($0.status == .created) }
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: fixture.headers("carol"), body: HTTPFixture.orderBody(quantity: 2)) { response in
                expectProblem(response, .conflict, "INSUFFICIENT_STOCK")
                #expect((json(response)["detail"] as? String)?.contains("1") == true, "detail says how many are left")
            }
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: fixture.headers("carol"), body: HTTPFixture.orderBody(quantity: 1)) { #expect($0.status == .created) }
            try await client.execute(uri: "/sales/phones/orders", method: .post, headers: fixture.headers("dave"), body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .conflict, "SOLD_OUT") }
            try await client.execute(uri: "/orders/\(orderID)", method: .delete, headers: fixture.headers("alice")) { response in
                #expect(response.status == .ok, "cancelling a cancelled order is idempotent")
            }
            let final = try fixture.ledger("phones")
            #expect(final.sold == 5 && final.status == .closed && final.invariantHolds)
        }
    }

    // Over the per-customer rate: 429 with Retry-After; other customers are unaffected.
    @Test func rateLimits() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components(customerRate: 2).application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "rl", stock: 5)
            // Eight requests at once (sent together, so a slow machine cannot spread them over refills).
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self, returning: [HTTPResponse.Status].self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await client.execute(uri: "/sales/rl/stock", method: .get, headers: fixture.headers("eager")) { response in
                            if response.status == .tooManyRequests {
                                expectProblem(response, .tooManyRequests, "RATE_LIMITED")
                                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
                            }
                            return response.status
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .ok }.count >= 4, "a burst of twice the rate passes: \(statuses)")
            #expect(statuses.contains(.tooManyRequests))
            try await client.execute(uri: "/sales/rl/stock", method: .get, headers: fixture.headers("calm")) { #expect($0.status == .ok) }
        }
    }

    // Admin: the lease table and rebalance (even, drain); the static page and the OpenAPI document.
    @Test func adminAndStaticRoutes() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "adm", stock: 100)
            try await client.execute(uri: "/sales/adm/orders", method: .post, headers: fixture.headers("alice"), body: HTTPFixture.orderBody(quantity: 1)) { #expect($0.status == .created) }
            let admin = fixture.headers("root", admin: true)
            var drainedShards: Set<String> = []
            try await client.execute(uri: "/admin/sales/adm/shards", method: .get, headers: admin) { response in
                let body = json(response)
                #expect(body["stock"] as? Int == 100 && body["sold"] as? Int == 1)
                let leases = body["leases"] as? [[String: Any]] ?? []
                drainedShards = Set(leases.compactMap { $0["shardId"] as? String })
                #expect(leases.count == 1 && leases.first?["owner"] as? String == "http-test")
                #expect((body["pool"] as? Int ?? 0) + leases.reduce(0) { $0 + ($1["remaining"] as? Int ?? 0) } == 99)
            }
            try await client.execute(uri: "/admin/sales/adm/rebalance", method: .post, headers: admin, body: ByteBuffer(string: #"{"mode":"drain","instance":"http-test"}"#)) { response in
                #expect(response.status == .accepted)
                #expect(json(response)["revokedLeases"] as? Int == 1)
            }
            // The drained leases are gone and their units back in the pool (the reconciler may already hold a
            // fresh lease taken from it: the units are then in that lease).
            let drained = try fixture.ledger("adm")
            #expect(drained.leases.allSatisfy { !drainedShards.contains($0.shardID) })
            #expect(drained.pool + drained.leases.reduce(0) { $0 + $1.remaining } == 99)
            try await client.execute(uri: "/admin/sales/adm/rebalance", method: .post, headers: admin, body: ByteBuffer(string: #"{"mode":"sideways"}"#)) { expectProblem($0, .badRequest, "INVALID_REQUEST") }
            try await client.execute(uri: "/admin/sales/nope/shards", method: .get, headers: admin) { expectProblem($0, .notFound, "NOT_FOUND") }
            // After a drain the instance sells again from a fresh lease: the first order may hit the revoked
            // lease (RETRY_LATER, nothing reserved), the next one is confirmed.
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<2 where statuses.last != .created {
                try await client.execute(uri: "/sales/adm/orders", method: .post, headers: fixture.headers("bob"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                    statuses.append(response.status)
                    if response.status != .created { expectProblem(response, .serviceUnavailable, "RETRY_LATER") }
                }
            }
            #expect(statuses.last == .created, "sells again after a drain: \(statuses)")
            #expect(try fixture.ledger("adm").sold == 2)

            var etag = ""
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body).contains("<html"))
                #expect(response.headers[.cacheControl] == "no-cache", "the page revalidates (ETag) so a release shows at once")
                etag = response.headers[.eTag] ?? ""
            }
            var conditional = HTTPFields()
            conditional[.ifNoneMatch] = etag
            try await client.execute(uri: "/", method: .get, headers: conditional) { #expect($0.status == .notModified) }
            try await client.execute(uri: "/openapi.yaml", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body).hasPrefix("openapi: 3.1.0"))
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(response.status == .ok)
                #expect(text.contains(#"flashsale_orders_total{result="confirmed"} 1"#) || text.contains(#"flashsale_orders_total{result="confirmed"} 2"#), "\(text)")
                #expect(text.contains(#"flashsale_http_requests_total{route="/sales/{saleId}/orders",status="201"}"#), "\(text)")
                // The SLO's histogram: route template (never an id), method, status class; the 200 ms bound is a bucket.
                #expect(text.contains(#"flashsale_http_request_duration_seconds_bucket{route="/sales/{saleId}/orders",method="POST",status_class="2xx",le="0.2"}"#), "\(text)")
                #expect(text.contains(#"flashsale_http_request_duration_seconds_count{route="/sales/{saleId}/orders",method="POST",status_class="5xx"}"#), "the RETRY_LATER answer: \(text)")
                #expect(!text.contains("route=\"/sales/adm"), "no sale id in a route label: \(text)")
                #expect(text.contains("flashsale_commit_batch_orders_bucket") && text.contains("flashsale_commit_latency_seconds_bucket"))
                #expect(text.contains("flashsale_leases_held") && text.contains("flashsale_websocket_clients 0"))
                #expect(text.contains("flashsale_leases_lapsed_total 0"), "no lease lapsed: \(text)")
            }
        }
    }

    // Behind a trusted front, an order's arrival is the front's X-Request-Start (a malformed one is no stamp,
    // never an error for the customer), and the instance reports how late it saw its customers.
    @Test func theFrontsArrivalStampIsTakenWhenTrusted() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components { $0.trustRequestStart = true; $0.trustedProxies = try! TrustedProxies(parsing: "127.0.0.1") }.application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "stamped", stock: 5)
            for (customer, stamp) in [("early", "t=\(wallClockMicroseconds() - 20_000)"), ("garbled", "t=soon")] {
                var headers = fixture.headers(customer)
                headers[HTTPField.Name("X-Request-Start")!] = stamp
                try await client.execute(uri: "/sales/stamped/orders", method: .post, headers: headers, body: HTTPFixture.orderBody(quantity: 1)) {
                    #expect($0.status == .created, "\(customer): \(String(buffer: $0.body))")
                }
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("flashsale_front_lag_seconds_count 1"), "one stamped order observed: \(text)")
                // bucket upper bound (seconds) -> orders at most that late
                let buckets = text.split(separator: "\n").compactMap { line -> (Double, Int)? in
                    guard line.hasPrefix(#"flashsale_front_lag_seconds_bucket{le=""#), let close = line.firstIndex(of: "}") else { return nil }
                    let bound = line[line.index(line.startIndex, offsetBy: 39)..<line.index(before: close)]
                    return (bound == "+Inf" ? .infinity : Double(bound) ?? -1, Int(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)) ?? -1)
                }
                #expect(buckets.count == 11 && buckets.allSatisfy { $0.0 >= 0 && $0.1 >= 0 }, "\(buckets)")
                #expect(buckets.filter { $0.0 < 0.02 }.allSatisfy { $0.1 == 0 } && buckets.last?.1 == 1, "stamped 20 ms before it arrived: \(buckets)")
            }
        }
    }

    // The comparison paths: direct sells through one script call per order and never oversells; noop
    // answers 201 without touching the ledger.
    @Test func comparisonOrderPaths() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(orderPath: .direct).application.test(.live) { client in
            try await fixture.createSale(client, id: "direct", stock: 3, limit: 1)
            var confirmed = 0
            for customer in 0..<5 {
                try await client.execute(uri: "/sales/direct/orders", method: .post, headers: fixture.headers("d\(customer)"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                    if response.status == .created { confirmed += 1 } else { expectProblem(response, .conflict, "SOLD_OUT") }
                }
            }
            #expect(confirmed == 3)
            let snapshot = try fixture.ledger("direct")
            #expect(snapshot.sold == 3 && snapshot.leases.isEmpty && snapshot.invariantHolds && snapshot.status == .closed)
        }
        let noop = try HTTPFixture()
        try await noop.components(orderPath: .noop).application.test(.live) { client in
            try await noop.createSale(client, id: "noop", stock: 3, limit: 1)
            try await client.execute(uri: "/sales/noop/orders", method: .post, headers: noop.headers("n"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                #expect(response.status == .created)
            }
            try await client.execute(uri: "/sales/noop/orders", method: .post, headers: noop.headers("n"), body: ByteBuffer(string: "{}")) { expectProblem($0, .badRequest, "INVALID_REQUEST") }
            #expect(try noop.ledger("noop").sold == 0, "noop never touches the ledger")
        }
    }

    // With the ledger unreachable an order is RETRY_LATER (503, Retry-After) and nothing is reserved;
    // once Redis is back the same request succeeds.
    @Test func ledgerDownIsRetryLater() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            try await fixture.createSale(client, id: "down", stock: 5)
            fixture.redis.shutdown()
            try await client.execute(uri: "/sales/down/orders", method: .post, headers: fixture.headers("alice"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                expectProblem(response, .serviceUnavailable, "RETRY_LATER")
                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
            }
            try fixture.redis.restart()
            #expect(try fixture.ledger("down").sold == 0, "nothing was reserved while the ledger was down")
            try await client.execute(uri: "/sales/down/orders", method: .post, headers: fixture.headers("alice"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                #expect(response.status == .created)
            }
        }
    }
}
