import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("Outbox: a failing sale or a transient refusal holds nothing else back", .serialized)
struct OutboxIsolationTests {
    // A sale whose drain keeps failing is skipped for the pass, its failure recorded, and the sales listed after it drain: two sales, MongoDB refusing every write of the first-listed one's sale document for good.
    // A commit-log entry that names an order the ledger does not hold (a record deleted by hand) is never
    // acknowledged: the sale is reported failing, the entry stays pending, and once the record is back the entry
    // is written and acknowledged. Nothing is dropped on the drainer's word.
    @Test func aCommitEntryNamingAMissingRecordIsKept() async throws {
        let harness = try OutboxHarness()
        let keys = LedgerKeys(saleID: harness.sale.id)
        let records = await harness.placeOrders(["kept-0", "kept-1"])
        #expect(records.count == 2)
        let connection = try harness.redis.connect()
        let removed = try #require(try connection.send("HGET", keys.orders, records[1].orderID).string)
        _ = try connection.send("HDEL", keys.orders, records[1].orderID)

        for _ in 0..<3 { _ = try? await harness.drainer.drainOnce() }
        let failing = harness.drainer.status.failingSales
        #expect(failing[harness.sale.id]?.contains("does not hold") == true, "\(failing)")
        #expect(try harness.streamState(keys.commits) == (1, 1), "the entry naming it is pending, not acknowledged; the other one is")
        let stored = Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String })
        #expect(stored == [records[0].orderID], "the other batch was written")

        _ = try connection.send("HSET", keys.orders, records[1].orderID, removed)
        try await harness.drainUntilIdle()
        #expect(Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        #expect(try harness.streamState(keys.commits) == (0, 0))
        #expect(harness.drainer.status.failingSales.isEmpty)
        await harness.shutdown()
    }

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
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).commits) == (0, 0))
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
