import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("Re-export: a live sale's ledger written to MongoDB again", .serialized)
struct ReexportTests {
    // MongoDB restored from a dump older than a live sale's last orders (here: emptied after the drain): the
    // re-export writes every order of the ledger again with the ledger's status (a cancellation included) and
    // the sale document, ends with the count check, and a second run changes nothing.
    @Test func aLiveSaleIsWrittenAgain() async throws {
        let harness = try OutboxHarness(stock: 20)
        let placed = await harness.placeOrders((0..<6).map { "customer-\($0)" })
        #expect(placed.count == 6)
        let cancelled = try await harness.engine.cancel(saleID: harness.sale.id, orderID: placed[0].orderID, customerID: placed[0].customerID)
        #expect(cancelled.status == .cancelled)
        try await harness.drainUntilIdle()
        #expect(try harness.mongoServer.documents(OutboxDocuments.orders).count == 6)
        try harness.mongoServer.control(["op": "reset"])  // the restore: MongoDB lost the sale's orders

        let reexport = LedgerReexport(redis: harness.client, mongo: harness.mongo)
        let report = try await reexport.reexport(saleID: harness.sale.id)
        #expect(report.orders == 6 && report.cancelled == 1 && report.inserted == 6 && report.inMongo == 6, "\(report)")
        let documents = try harness.mongoServer.documents(OutboxDocuments.orders)
        #expect(Set(documents.compactMap { $0["_id"] as? String }) == Set(placed.map(\.orderID)))
        #expect(documents.first { $0["_id"] as? String == placed[0].orderID }?["status"] as? String == "cancelled")
        #expect(documents.filter { $0["status"] as? String == "confirmed" }.count == 5)
        #expect(documents.allSatisfy { $0["customerId"] is String && $0["delivery"] is String && $0["saleId"] as? String == harness.sale.id })
        #expect(try harness.mongoServer.documents(OutboxDocuments.sales).first?["_id"] as? String == harness.sale.id)

        let again = try await reexport.reexport(saleID: harness.sale.id)
        #expect(again.orders == 6 && again.inserted == 0 && again.inMongo == 6, "idempotent by _id: \(again)")
        // A sale the ledger does not hold is refused, not reported as zero orders.
        await #expect(throws: LedgerReexport.Failure.self) { _ = try await reexport.reexport(saleID: "never-was") }
        await harness.shutdown()
    }
}
