import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import Replication
import Testing
import TestSupport

@Suite("Orders outlive the sale: reads from MongoDB once Redis retired it", .serialized)
struct SettledSaleReadTests {
    static let body = #"{"quantity":QTY,"delivery":{"name":"Ada Lovelace","phone":"5550100","address":"1 Main St"}}"#

    static func order(_ quantity: Int) -> ByteBuffer { ByteBuffer(string: body.replacingOccurrences(of: "QTY", with: String(quantity))) }

    // A sale sells, one order is cancelled, an admin closes it, the outbox drains to MongoDB (the stand-in) and the
    // sale's keys expire (retention 1 s); then a new instance (nothing in memory) answers every read route from
    // MongoDB with the shapes Redis gave: to the owner, to another customer (never the order), to an admin; the
    // sale id cannot be reused and its orders not cancelled; with MongoDB down the Redis cache still answers, and
    // once it has expired every read is 503, never empty.
    @Test func everyReadRouteAnswersFromMongoAfterRetention() async throws {
        let fixture = try HTTPFixture()
        // The stand-in as a replica set: the drainer writes to its primary, the reads go to its secondary.
        let mongo = try MongoWireServer(replicaSet: "rs0")
        defer { mongo.stop() }
        let configure: (inout ServerConfiguration) -> Void = { $0.outbox.retentionSeconds = 1 }
        let ids = try await fixture.components(mongoURI: mongo.uri, configure: configure).application.test(.live) { client -> [String: String] in
            var ids: [String: String] = [:]
            try await fixture.createSale(client, id: "settled", stock: 10)
            for (name, customer, quantity) in [("a", "alice", 1), ("b", "bob", 2), ("c", "alice", 1)] {
                ids[name] = try await client.execute(uri: "/sales/settled/orders", method: .post, headers: fixture.headers(customer), body: Self.order(quantity)) { response in
                    #expect(response.status == .created, "\(String(buffer: response.body))")
                    return json(response)["orderId"] as? String
                }
            }
            try await client.execute(uri: "/orders/\(ids["c"] ?? "")", method: .delete, headers: fixture.headers("alice")) { #expect($0.status == .ok) }
            try await client.execute(uri: "/admin/sales/settled/close", method: .post, headers: fixture.headers("ops", admin: true)) { #expect($0.status == .ok) }
            // Drained, summarized in MongoDB, and gone from Redis.
            let connection = try fixture.redis.connect()
            var retired = false
            for _ in 0..<300 where !retired {
                let stored = try mongo.documents("sales").first { $0["_id"] as? String == "settled" }
                let keysLeft = try connection.send("EXISTS", LedgerKeys(saleID: "settled").meta).integer
                let orders = try mongo.documents("orders").filter { $0["saleId"] as? String == "settled" }.count
                retired = stored?["summaryJSON"] != nil && keysLeft == 0 && orders == 3
                if !retired { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(retired, "the sale drained to MongoDB and its keys expired")
            return ids
        }
        let (a, b, c) = (ids["a"] ?? "", ids["b"] ?? "", ids["c"] ?? "")

        // A restarted instance: nothing of the sale in memory or in Redis.
        try await fixture.components(mongoURI: mongo.uri, configure: configure).application.test(.live) { client in
            try await client.execute(uri: "/orders/\(a)", method: .get, headers: fixture.headers("alice")) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let body = json(response)
                #expect(body["status"] as? String == "confirmed" && body["quantity"] as? Int == 1 && body["customerId"] as? String == "alice")
                #expect((body["delivery"] as? [String: Any])?["name"] as? String == "Ada Lovelace", "the owner's delivery opens with the data key")
            }
            try await client.execute(uri: "/orders/\(c)", method: .get, headers: fixture.headers("alice")) { #expect(json($0)["status"] as? String == "cancelled") }
            try await client.execute(uri: "/orders/\(a)", method: .get, headers: fixture.headers("bob")) { expectProblem($0, .notFound, "NOT_FOUND") }
            try await client.execute(uri: "/orders/\(b)", method: .get, headers: fixture.headers("ops", admin: true)) { response in
                #expect(response.status == .ok && json(response)["delivery"] == nil && json(response)["quantity"] as? Int == 2)
            }
            try await client.execute(uri: "/orders/settled-0000-nosuch", method: .get, headers: fixture.headers("alice")) { expectProblem($0, .notFound, "NOT_FOUND") }
            try await client.execute(uri: "/sales/settled", method: .get, headers: fixture.headers("alice")) { response in
                let body = json(response)
                #expect(response.status == .ok && body["status"] as? String == "closed" && body["sold"] as? Int == 3 && body["available"] as? Int == 7, "\(body)")
            }
            try await client.execute(uri: "/sales/settled/stock", method: .get, headers: fixture.headers("alice")) { response in
                #expect(response.status == .ok && json(response)["available"] as? Int == 7 && json(response)["sold"] as? Int == 3)
            }
            try await client.execute(uri: "/sales/settled/summary", method: .get, headers: fixture.headers("alice")) { response in
                let body = json(response)
                #expect(body["final"] as? Bool == true && body["sold"] as? Int == 3 && body["cancelled"] as? Int == 1 && body["closedReason"] as? String == "closed", "\(body)")
            }
            try await client.execute(uri: "/sales/settled/me", method: .get, headers: fixture.headers("alice")) { response in
                let body = json(response)
                let orders = body["orders"] as? [[String: Any]] ?? []
                #expect(body["purchased"] as? Int == 1 && orders.map { $0["orderId"] as? String ?? "" } == [a, c], "\(body)")
                #expect(orders.map { $0["status"] as? String ?? "" } == ["confirmed", "cancelled"] && body["waitlist"] is NSNull)
            }
            try await client.execute(uri: "/sales/settled/me", method: .get, headers: fixture.headers("carol")) { response in
                #expect(response.status == .ok && json(response)["purchased"] as? Int == 0 && (json(response)["orders"] as? [Any])?.isEmpty == true)
            }
            try await client.execute(uri: "/admin/sales", method: .get, headers: fixture.headers("ops", admin: true)) { response in
                let sales = json(response)["sales"] as? [[String: Any]] ?? []
                #expect(sales.contains { $0["id"] as? String == "settled" && $0["status"] as? String == "closed" }, "\(sales)")
            }
            try await client.execute(uri: "/orders/\(a)", method: .delete, headers: fixture.headers("alice")) { expectProblem($0, .conflict, "SALE_ENDED") }
            let again = #"{"id":"settled","name":"Again","stock":5,"startsAt":"\#(ISO8601DateFormatter().string(from: Date()))","durationSeconds":60}"#
            try await client.execute(uri: "/admin/sales", method: .post, headers: fixture.headers("ops", admin: true), body: ByteBuffer(string: again)) {
                expectProblem($0, .conflict, "SALE_EXISTS")
            }
            try await client.execute(uri: "/sales/never-was", method: .get, headers: fixture.headers("alice")) { expectProblem($0, .notFound, "NOT_FOUND") }
            #expect(try mongo.commands(named: "find", servedBy: "secondary").count > 0, "reads reached the secondary")
            #expect(try mongo.commands(named: "update", servedBy: "secondary").isEmpty && mongo.commands(named: "insert", servedBy: "secondary").isEmpty)

            // MongoDB gone: what Redis cached still answers (a settled sale and its orders never change again)...
            try mongo.control(["op": "down"])
            try await client.execute(uri: "/orders/\(a)", method: .get, headers: fixture.headers("alice")) { #expect($0.status == .ok) }
            try await client.execute(uri: "/sales/settled/summary", method: .get, headers: fixture.headers("alice")) { #expect(json($0)["sold"] as? Int == 3) }
            // ...and once the cache has expired, every read of the settled sale is 503 RETRY_LATER, never a silent
            // empty answer.
            let connection = try fixture.redis.connect()
            for key in try connection.send("KEYS", "fs:cache:*").array?.compactMap(\.string) ?? [] { _ = try connection.send("DEL", key) }
            for uri in ["/orders/\(a)", "/sales/settled", "/sales/settled/me", "/sales/settled/summary", "/admin/sales"] {
                try await client.execute(uri: uri, method: .get, headers: fixture.headers("alice", admin: uri.hasPrefix("/admin"))) { response in
                    expectProblem(response, .serviceUnavailable, "RETRY_LATER")
                    #expect(response.headers[.retryAfter] != nil, "\(uri)")
                }
            }
            try mongo.control(["op": "up"])
        }
    }

    // Without MongoDB, a sale Redis no longer holds is a 404 that says why, and /me never answers an empty list
    // for a sale whose keys are gone.
    @Test func withoutMongoTheAnswerSaysSo() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            try await fixture.createSale(client, id: "gone", stock: 3)
            try await client.execute(uri: "/sales/gone/orders", method: .post, headers: fixture.headers("alice"), body: HTTPFixture.orderBody(quantity: 1)) {
                #expect($0.status == .created)
            }
            // The keys vanish (a replaced Redis) while this instance still remembers the sale.
            let connection = try fixture.redis.connect()
            for key in LedgerKeys(saleID: "gone").all { _ = try connection.send("DEL", key) }
            try await client.execute(uri: "/sales/gone/me", method: .get, headers: fixture.headers("alice")) { response in
                expectProblem(response, .notFound, "NOT_FOUND")
                #expect(String(buffer: response.body).contains("MONGO_URI"))
            }
        }
    }
}
