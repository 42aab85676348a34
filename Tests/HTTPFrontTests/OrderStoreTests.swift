import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import Replication
import Testing
import TestSupport

@Suite("Orders reach MongoDB sealed; delivery details open only for their owner", .serialized)
struct OrderStoreTests {
    static let markers = ["Zelda Cleartextmarker", "+1 555 0199 42", "77 Hidden Orchard Lane"]
    static let body = #"{"quantity":1,"delivery":{"name":"Zelda Cleartextmarker","phone":"+1 555 0199 42","address":"77 Hidden Orchard Lane"}}"#

    @Test func deliveryDetailsAreNeverStoredInClear() async throws {
        let fixture = try HTTPFixture()
        let mongo = try MongoWireServer()
        let components = fixture.components(mongoURI: mongo.uri)
        try await components.application.test(.live) { client in
            try await fixture.createSale(client, id: "sealed", stock: 10)
            var orderID = ""
            try await client.execute(uri: "/sales/sealed/orders", method: .post, headers: fixture.headers("owner"), body: ByteBuffer(string: Self.body)) { response in
                #expect(response.status == .created)
                orderID = json(response)["orderId"] as? String ?? ""
            }
            // The owner reads the details back in clear; nobody else sees them.
            try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers("owner")) { response in
                let delivery = json(response)["delivery"] as? [String: Any]
                #expect(delivery?["name"] as? String == Self.markers[0])
                #expect(delivery?["phone"] as? String == Self.markers[1])
                #expect(delivery?["address"] as? String == Self.markers[2])
            }
            try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers("someone-else")) { response in
                expectProblem(response, .notFound, "NOT_FOUND")
            }
            try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers("ops", admin: true)) { response in
                #expect(response.status == .ok)
                #expect(json(response)["delivery"] == nil)
            }

            // The drainer (a service of the application) moves the order to MongoDB.
            var stored: [String: Any]?
            for _ in 0..<200 where stored == nil {
                stored = try mongo.documents("orders").first { $0["_id"] as? String == orderID }
                if stored == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let document = try #require(stored, "the order reached MongoDB")
            let sealed = try #require(document["delivery"] as? String)
            #expect(sealed.hasPrefix("fs1.test1."))
            let opened = try FieldCipher(sealing: HTTPFixture.dataKey).open(sealed, context: "delivery/sealed/owner")
            #expect(opened.contains(Self.markers[0]))

            // Nothing in clear in MongoDB's received commands...
            let journal = try mongo.journalText()
            #expect(journal.contains(orderID))
            for marker in Self.markers { #expect(!journal.contains(marker), "\(marker) reached MongoDB in clear") }
            // ...nor anywhere in Redis: every key's DUMP (uncompressed) and its readable contents.
            let connection = try fixture.redis.connect()
            _ = try connection.send("CONFIG", "SET", "rdbcompression", "no")
            var everything: [UInt8] = []
            var cursor = "0"
            repeat {
                let page = try connection.send("SCAN", cursor, "COUNT", "1000").array ?? []
                cursor = page.first?.string ?? "0"
                for key in page.last?.array?.compactMap(\.string) ?? [] {
                    if case .bulk(let dump) = try connection.send("DUMP", key) { everything += dump }
                    everything += Array(Self.readable(connection, key).utf8)
                }
            } while cursor != "0"
            #expect(everything.count > 1_000, "the scan saw the ledger")
            let text = String(decoding: everything, as: UTF8.self)
            #expect(text.contains(orderID))
            for marker in Self.markers { #expect(!text.contains(marker), "\(marker) is in Redis in clear") }

            try await client.execute(uri: "/readyz", method: .get) { response in
                let details = json(response)["details"] as? [String: Any]
                #expect(details?["orderStore"] as? String == "mongodb")
                #expect((details?["ordersWritten"] as? Int ?? 0) >= 1)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                let line = text.split(separator: "\n").first { $0.hasPrefix(#"flashsale_outbox_written_total{kind="orders"}"#) }
                #expect(line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0 >= 1, "\(line ?? "no outbox metric")")
            }
        }
        mongo.stop()
    }

    @Test func withoutMongoTheOrdersStayInTheOutboxAndReadinessSaysSo() async throws {
        let fixture = try HTTPFixture()
        let components = fixture.components()
        #expect(components.drainer == nil)
        try await components.application.test(.live) { client in
            try await fixture.createSale(client, id: "nomongo", stock: 5)
            try await client.execute(uri: "/sales/nomongo/orders", method: .post, headers: fixture.headers("c1"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                #expect(response.status == .created)
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                let details = json(response)["details"] as? [String: Any]
                #expect((details?["orderStore"] as? String)?.contains("not configured") == true)
            }
            let connection = try fixture.redis.connect()
            #expect(try connection.send("XLEN", LedgerKeys(saleID: "nomongo").commits).integer == 1, "the order waits in the commit log")
        }
    }

    /// A key's contents as text, whatever its type.
    static func readable(_ connection: RedisConnection, _ key: String) -> String {
        func flat(_ reply: RedisReply?) -> String {
            switch reply {
            case .bulk(let bytes)?: String(decoding: bytes, as: UTF8.self)
            case .status(let text)?: text
            case .integer(let value)?: String(value)
            case .array(let elements)?: elements.map { flat($0) }.joined(separator: " ")
            default: ""
            }
        }
        let type = (try? connection.send("TYPE", key))?.string ?? ""
        let command: [String] = switch type {
        case "string": ["GET", key]
        case "hash": ["HGETALL", key]
        case "stream": ["XRANGE", key, "-", "+"]
        case "zset": ["ZRANGE", key, "0", "-1", "WITHSCORES"]
        case "set": ["SMEMBERS", key]
        case "list": ["LRANGE", key, "0", "-1"]
        default: []
        }
        guard !command.isEmpty else { return "" }
        return flat(try? connection.send(RedisCommand(command)))
    }
}
