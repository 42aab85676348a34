import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("Outbox: a failing sale or a transient refusal holds nothing else back", .serialized)
struct OutboxIsolationTests {
    // A sale whose drain keeps failing is skipped for the pass, its failure recorded, and the sales listed after it drain: two sales, MongoDB refusing every write of the first-listed one's sale document for good.
    @Test func aFailingSaleDoesNotBlockTheOthers() async throws {
        let harness = try OutboxHarness()
        let now = LedgerFixture.nowMilliseconds
        // Starts after the harness's sale: listed first (latest start first).
        let blocked = SaleDefinition(id: "blocked-\(UUID().uuidString.prefix(8))", name: "Blocked", stock: 5,
                                     startsAtMilliseconds: now - 500, endsAtMilliseconds: now + 3_600_000, perCustomerLimit: 2)
        #expect(try Ledger(connection: harness.redis.connect()).createSale(blocked))
        try harness.mongoServer.control(["op": "writeError", "command": "update", "code": 121, "errmsg": "Document failed validation",
                                         "match": ["_id": blocked.id], "times": -1])
        let records = await harness.placeOrders((0..<3).map { "behind-\($0)" })
        #expect(records.count == 3)
        for _ in 0..<3 { _ = try? await harness.drainer.drainOnce() }

        let stored = Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String })
        #expect(stored == Set(records.map(\.orderID)), "the sale listed after the failing one drained")
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).outbox) == (0, 0))
        #expect(harness.drainer.status.lastError != nil, "the failure is recorded")
        let failing = harness.drainer.status.failingSales
        #expect(Array(failing.keys) == [blocked.id] && failing[blocked.id]?.contains("121") == true, "\(failing)")
        await harness.shutdown()
    }

    // Interrupted (11601) and the stale-routing codes of a sharded cluster (63, 150, 13388) are transient: the order MongoDB answered with one is written on a later pass, never compensated (stand-in write error, once).
    @Test(arguments: [Int32(11601), 63, 150, 13388])
    func aTransientWriteErrorIsRetriedNotCompensated(code: Int32) async throws {
        #expect(MongoError.kind(serverCode: code, labels: []) == .transient)
        let harness = try OutboxHarness()
        let records = await harness.placeOrders(["retry-0", "retry-1"])
        try harness.mongoServer.control(["op": "writeError", "command": "update", "code": Int(code), "errmsg": "injected \(code)",
                                         "match": ["_id": records[0].orderID], "times": 1])
        try await harness.drainUntilIdle()
        #expect(harness.drainer.status.compensated == 0)
        let stored = Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String })
        #expect(stored == Set(records.map(\.orderID)))
        let ledgerStatus = try LedgerFixture.orders(on: harness.redis, saleID: harness.sale.id).first { $0.orderID == records[0].orderID }?.status
        #expect(ledgerStatus == .confirmed)
        #expect(MongoError.kind(serverCode: 121, labels: []) == .permanent, "a validation error stays permanent")
        await harness.shutdown()
    }
}
