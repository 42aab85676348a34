import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("A flash crowd over HTTP", .serialized)
struct CrowdTests {
    // 60 customers at once for 20 units while another instance holds 5 of them: every answer is 201, 202 or
    // a definitive 409, never 503; 15 customers buy here, the rest wait in arrival order, and when the other
    // instance gives its lease back the waitlist is served from its head.
    @Test func everyCustomerGetsADefinitiveAnswer() async throws {
        let fixture = try HTTPFixture()
        let app = fixture.components().application
        try await app.test(.live) { client in
            try await fixture.createSale(client, id: "crowd", stock: 20, limit: 1)
            let ledger = Ledger(connection: try fixture.redis.connect())
            let holder = try ledger.acquireLease(saleID: "crowd", owner: "other-instance", shardID: "other#1",
                                                 sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 5), ttlMilliseconds: 60_000)
            guard case .granted(let fence, 5, _, _) = holder else { Issue.record("the other instance leases 5 units: \(holder)"); return }

            let answers = try await withThrowingTaskGroup(of: (String, Int, Int?).self, returning: [(String, Int, Int?)].self) { group in
                for index in 0..<60 {
                    let customer = String(format: "shopper-%02d", index)
                    group.addTask {
                        try await client.execute(uri: "/sales/crowd/orders", method: .post, headers: fixture.headers(customer),
                                                 body: ByteBuffer(string: HTTPFixture.orderBody)) { response in
                            (customer, Int(response.status.code), json(response)["position"] as? Int)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let statuses = Dictionary(grouping: answers, by: \.1).mapValues(\.count)
            #expect(Set(statuses.keys).isSubset(of: [201, 202, 409]), "only definitive answers: \(statuses)")
            #expect(statuses[201] == 15, "the units this instance could lease: \(statuses)")
            #expect((statuses[202] ?? 0) > 0, "customers wait while the other instance holds units: \(statuses)")
            let waiting = answers.filter { $0.1 == 202 }.sorted { ($0.2 ?? 0) < ($1.2 ?? 0) }
            #expect(waiting.map { $0.2 ?? 0 } == Array(1...waiting.count), "positions 1...n, no gaps")

            // The other instance returns its lease: the first five in the waitlist are served, in order.
            #expect(try ledger.returnLease(saleID: "crowd", owner: "other-instance", shardID: "other#1", fence: fence) == 5)
            let orders = try ledger.orders(saleID: "crowd")
            let servedFromWaitlist = Set(orders.filter { $0.source == "waitlist" }.map(\.customerID))
            #expect(servedFromWaitlist == Set(waiting.prefix(5).map(\.0)), "the waitlist is served from its head")
            let snapshot = try fixture.ledger("crowd")
            #expect(snapshot.invariantHolds && snapshot.sold == 20 && snapshot.status == .closed)
        }
    }
}
