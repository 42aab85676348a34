import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

/// The outbox scenarios against a real MongoDB, in a fresh database per test (dropped afterwards).
/// Runs only when `MONGO_URI` is set (e.g. `MONGO_URI=mongodb://host:27017/?replicaSet=rs0 make test`);
/// otherwise the suite is reported as skipped. Faults that need control of the server's wire (drops,
/// scripted errors) are covered against the wire-level server; here a real validator provides the
/// permanent refusal.
@Suite("Outbox against a live MongoDB (MONGO_URI)", .serialized,
       .enabled(if: ProcessInfo.processInfo.environment["MONGO_URI"]?.isEmpty == false, "MONGO_URI is not set"))
struct LiveMongoTests {
    var uri: String { ProcessInfo.processInfo.environment["MONGO_URI"] ?? "" }

    @Test func drainsAndReplaysIdempotently() async throws {
        let harness = try OutboxHarness(liveURI: uri)
        let records = await harness.placeOrders((0..<6).map { "live-\($0)" })
        _ = try await harness.engine.cancel(saleID: harness.sale.id, orderID: records[0].orderID, customerID: records[0].customerID)
        try await harness.drainUntilIdle()
        let documents = try await harness.mongo.find("orders", filter: ["saleId": .string(harness.sale.id)], sort: ["createdAt": .int32(1)])
        #expect(Set(documents.compactMap { $0["_id"]?.string }) == Set(records.map(\.orderID)))
        #expect(documents.first { $0["_id"]?.string == records[0].orderID }?["status"]?.string == "cancelled")

        // Replaying a confirmation (a lost reply) matches the stored document and changes nothing.
        let replay = OutboxDocuments.orderWrites(saleID: harness.sale.id, entry: StreamEntry(id: "1-0", fields: [
            "type": "order", "orderId": records[1].orderID, "customer": records[1].customerID, "quantity": "1", "at": "1", "delivery": "other",
        ]))!.first!.write
        let result = try await harness.mongo.bulkWrite("orders", [replay])
        #expect(result.matched == 1 && result.modified == 0 && result.upserted == 0)
        let after = try await harness.mongo.find("orders", filter: ["_id": .string(records[1].orderID)])
        #expect(after.first?["delivery"]?.string == "sealed-\(records[1].customerID)")
        await harness.shutdown()
    }

    @Test func aValidatorRefusalRunsTheCompensation() async throws {
        let harness = try OutboxHarness(liveURI: uri)
        _ = try await harness.mongo.command(["create": "orders", "validator": .document(["customerId": .document(["$ne": "refused"])])])
        let records = await harness.placeOrders(["accepted-1", "refused", "accepted-2"], quantity: 2)
        let pass = try await harness.drainUntilIdle()
        #expect(pass.compensated == 1)
        let refused = try #require(try LedgerFixture.orders(on: harness.redis, saleID: harness.sale.id).first { $0.customerID == "refused" })
        #expect(refused.status == .failed)
        let stored = try await harness.mongo.find("orders", filter: ["saleId": .string(harness.sale.id)])
        #expect(Set(stored.compactMap { $0["_id"]?.string }) == Set(records.filter { $0.customerID != "refused" }.map(\.orderID)))
        await harness.shutdown()
    }

    @Test func theLedgerRebuildsFromALiveMongo() async throws {
        let harness = try OutboxHarness(stock: 30, liveURI: uri)
        let saleID = harness.sale.id
        let records = await harness.placeOrders((0..<6).map { "live-rebuild-\($0)" }, quantity: 2)
        _ = try await harness.engine.cancel(saleID: saleID, orderID: records[1].orderID, customerID: records[1].customerID)
        await harness.engine.shutdown()
        try await harness.drainUntilIdle()
        let before = try LedgerState(server: harness.redis, saleID: saleID)
        _ = try harness.redis.connect().send("FLUSHALL")
        _ = try await LedgerRebuild(redis: harness.client, mongo: harness.mongo).rebuild(saleID: saleID, force: false)
        #expect(try LedgerState(server: harness.redis, saleID: saleID) == before)
        _ = try? await harness.mongo.command(["dropDatabase": .int32(1)])
        harness.mongo.shutdown()
        harness.client.shutdown()
    }
}
