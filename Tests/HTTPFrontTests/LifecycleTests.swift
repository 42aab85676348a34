import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOCore
import Replication
import ReservationEngine
import Synchronization
import Testing
import TestSupport

/// Collects the text messages a WebSocket client received.
final class ReceivedMessages: Sendable {
    private let messages = Mutex<[String]>([])
    func append(_ message: String) { messages.withLock { $0.append(message) } }
    var all: [String] { messages.withLock { $0 } }

    /// Connects to a sale's live socket and collects its text messages until the task is cancelled.
    func listen(port: Int, saleID: String, token: String) -> Task<Void, any Error> {
        var logger = Logger(label: "ws-client")
        logger.logLevel = .warning
        return Task {
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/sales/\(saleID)/live", configuration: liveProtocols(token), logger: logger) { inbound, _, _ in
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    if case .text(let text) = message { self.append(text) }
                }
            }
        }
    }
}

@Suite("Sale lifecycle and live stock on the live server")
struct LifecycleTests {
    // A sale scheduled 2 s ahead refuses orders with SALE_NOT_STARTED and Retry-After, opens by itself,
    // sells out, closes by itself; the final summary equals the ledger; a WebSocket client sees the stock
    // fall to 0 and the closed message.
    @Test func scheduledSaleOpensSellsOutAndCloses() async throws {
        let fixture = try HTTPFixture()
        let components = fixture.components()
        try await components.application.test(.live) { client in
            let port = try #require(client.port)
            try await fixture.createSale(client, id: "launch", stock: 6, limit: 2, startsIn: 2)
            try await client.execute(uri: "/sales/launch", method: .get, headers: fixture.headers("early")) { response in
                #expect(json(response)["status"] as? String == "scheduled")
            }
            try await client.execute(uri: "/sales/launch/orders", method: .post, headers: fixture.headers("early"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                expectProblem(response, .conflict, "SALE_NOT_STARTED")
                let retryAfter = Int(response.headers[.retryAfter] ?? "") ?? 0
                #expect((1...3).contains(retryAfter), "Retry-After counts the seconds until the start")
            }

            // Listen to the live socket for the whole sale.
            let received = ReceivedMessages()
            let socket = received.listen(port: port, saleID: "launch", token: fixture.tokens.sign(subject: "watcher", admin: false, expiresAt: Date().addingTimeInterval(600)))

            // It opens by itself: the ledger says open without any order arriving.
            let opened = try await waitUntil(seconds: 6) { try fixture.ledger("launch").status == .open }
            #expect(opened, "the sale opened at its start with no request")

            for customer in ["a", "b", "c"] {
                try await client.execute(uri: "/sales/launch/orders", method: .post, headers: fixture.headers(customer), body: HTTPFixture.orderBody(quantity: 2)) { response in
                    #expect(response.status == .created)
                }
            }
            try await client.execute(uri: "/sales/launch/orders", method: .post, headers: fixture.headers("d"), body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .conflict, "SOLD_OUT") }

            let snapshot = try fixture.ledger("launch")
            #expect(snapshot.status == .closed && snapshot.closedReason == .soldOut && snapshot.sold == 6 && snapshot.invariantHolds)

            let sawClosed = try await waitUntil(seconds: 5) { received.all.contains { $0.contains(#""type":"closed""#) } }
            #expect(sawClosed, "the closed message arrives: \(received.all)")
            socket.cancel()
            let messages = received.all
            #expect(messages.first?.contains(#""type":"stock""#) == true, "a stock message on connect: \(messages)")
            #expect(messages.contains { $0.contains(#""available":0"#) }, "the stock falls to 0: \(messages)")
            #expect(messages.last == #"{"type":"closed","reason":"sold_out"}"#)

            try await client.execute(uri: "/sales/launch/summary", method: .get, headers: fixture.headers("a")) { response in
                #expect(response.status == .ok)
                let body = json(response)
                #expect(body["final"] as? Bool == true && body["status"] as? String == "closed" && body["closedReason"] as? String == "sold_out")
                #expect(body["sold"] as? Int == snapshot.sold && body["stock"] as? Int == 6)
                #expect(body["orders"] as? Int == 3 && body["buyers"] as? Int == 3 && body["cancelled"] as? Int == 0)
                #expect(body["openedAt"] is String && body["soldOutAt"] is String && body["closedAt"] is String)
                #expect((body["sellOutMilliseconds"] as? Int ?? -1) >= 0)
                // The summary is final at close: it counts the refusals made while the sale ran.
                #expect((body["rejections"] as? [String: Int])?["SALE_NOT_STARTED"] ?? 0 >= 1, "rejections by code: \(body)")
                #expect((body["waitlist"] as? [String: Int]) == ["joined": 0, "served": 0, "unserved": 0])
            }
            try await client.execute(uri: "/sales/launch/orders", method: .post, headers: fixture.headers("e"), body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .conflict, "SOLD_OUT") }
        }
    }

    // A sale closes at its end with no request; afterwards orders get SALE_ENDED and cancellation is refused.
    @Test func saleEndsByItself() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            try await fixture.createSale(client, id: "brief", stock: 10, limit: 2, startsIn: 0, durationSeconds: 3)
            var orderID = ""
            try await client.execute(uri: "/sales/brief/orders", method: .post, headers: fixture.headers("a"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                #expect(response.status == .created)
                orderID = json(response)["orderId"] as? String ?? ""
            }
            let closed = try await waitUntil(seconds: 8) { try fixture.ledger("brief").status == .closed }
            #expect(closed, "closed at its end with no request")
            #expect(try fixture.ledger("brief").closedReason == .ended)
            try await client.execute(uri: "/sales/brief/orders", method: .post, headers: fixture.headers("b"), body: HTTPFixture.orderBody(quantity: 1)) { expectProblem($0, .conflict, "SALE_ENDED") }
            try await client.execute(uri: "/orders/\(orderID)", method: .delete, headers: fixture.headers("a")) { expectProblem($0, .conflict, "SALE_ENDED") }
            try await client.execute(uri: "/sales/brief/summary", method: .get, headers: fixture.headers("a")) { response in
                let body = json(response)
                #expect(body["final"] as? Bool == true && body["closedReason"] as? String == "ended" && body["sold"] as? Int == 1)
                #expect(body["soldOutAt"] is NSNull)
            }
        }
    }
}

@Suite("Waitlist over HTTP")
struct WaitlistHTTPTests {
    // Units held by another instance's lease: the customer is waitlisted (202, position 1); when that lease
    // expires the units serve the customer, a waitlist message reaches the customer's socket, /me shows it.
    @Test func waitlistedCustomerIsServedAndTold() async throws {
        let fixture = try HTTPFixture()
        // The other instance's lease outlives the set-up below (the socket must be open before it expires)
        // even on a busy machine.
        let other = LedgerFixture.engine(on: fixture.redis, instanceID: "other", leaseTTLMilliseconds: 2_500, maxShardUnits: 10, spreadFactor: 1)
        try await fixture.components().application.test(.live) { client in
            let port = try #require(client.port)
            try await fixture.createSale(client, id: "wait", stock: 3, limit: 1)
            guard case .confirmed = await other.reserve(saleID: "wait", customerID: "first", quantity: 1, idempotencyKey: nil, delivery: "{}") else {
                Issue.record("the other instance sells one unit"); return
            }
            #expect(try fixture.ledger("wait").leases.first?.remaining == 2, "the other instance holds 2 units")

            try await client.execute(uri: "/sales/wait/orders", method: .post, headers: fixture.headers("patient"), body: HTTPFixture.orderBody(quantity: 1)) { response in
                #expect(response.status == .accepted)
                #expect(json(response)["status"] as? String == "waitlisted" && json(response)["position"] as? Int == 1)
            }
            try await client.execute(uri: "/sales/wait/me", method: .get, headers: fixture.headers("patient")) { response in
                #expect((json(response)["waitlist"] as? [String: Any])?["position"] as? Int == 1)
            }

            let received = ReceivedMessages()
            let socket = received.listen(port: port, saleID: "wait", token: fixture.tokens.sign(subject: "patient", admin: false, expiresAt: Date().addingTimeInterval(600)))
            // The other instance stops renewing; its lease expires and this instance's reconciler serves the waitlist.
            let told = try await waitUntil(seconds: 8) { received.all.contains { $0.contains(#""type":"waitlist""#) } }
            socket.cancel()
            #expect(told, "the served customer's socket gets a waitlist message: \(received.all)")
            try await client.execute(uri: "/sales/wait/me", method: .get, headers: fixture.headers("patient")) { response in
                let body = json(response)
                #expect(body["purchased"] as? Int == 1 && body["waitlist"] is NSNull)
            }
            let snapshot = try fixture.ledger("wait")
            #expect(snapshot.sold == 2 && snapshot.invariantHolds && snapshot.statistics["waitlistServed"] == 1)
        }
        await other.shutdown()
    }
}

/// Polls `condition` every 50 ms for at most `seconds`.
func waitUntil(seconds: Double, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try condition()
}
