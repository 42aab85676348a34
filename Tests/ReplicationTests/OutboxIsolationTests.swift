import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("Outbox: a failing sale or a transient refusal holds nothing else back", .serialized)
struct OutboxIsolationTests {
    // Interrupted (11601) and the stale-routing codes of a sharded cluster (63, 150, 13388) are transient: the order
    // MongoDB answered with one is written on a later pass, never compensated (stand-in write error, once).
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
