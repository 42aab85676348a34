import Foundation
@testable import Replication
import ReservationEngine
import Synchronization
import Testing
import TestSupport

@Suite("Reads of settled sales: MongoDB's secondaries, the Redis cache, bounded", .serialized)
struct SaleArchiveTests {
    static let saleID = "archived"
    static let orderID = "archived.o0123456789abcdef01234567"

    /// A settled sale and one of its orders, written the way the outbox drainer writes them.
    static func writeSettledSale(_ mongo: MongoClient) async throws {
        let meta = ["id": saleID, "name": "Phones", "stock": "10", "startMs": "1796000000000", "endMs": "1796003600000",
                    "limit": "2", "status": "closed", "closedReason": "sold_out"]
        let summary = #"{"saleID":"archived","final":true,"status":"closed","stock":10,"sold":10,"orders":6,"buyers":6,"cancelled":0,"rejections":{},"waitlistJoined":0,"waitlistServed":0,"waitlistUnserved":0}"#
        _ = try await mongo.bulkWrite(OutboxDocuments.sales, [OutboxDocuments.saleWrite(saleID: saleID, meta: meta, summaryJSON: summary)])
        _ = try await mongo.bulkWrite(OutboxDocuments.orders, [.replace([
            "_id": .string(orderID), "saleId": .string(saleID), "customerId": "alice", "quantity": .int64(2),
            "createdAt": .date(1_796_000_000_500), "status": "confirmed", "delivery": "fs1.k1.sealed",
        ])])
    }

    // The stand-in plays a replica set (a primary and a secondary over one store, each journaling what it served):
    // the writes land on the primary, the archive's finds on the secondary (secondaryPreferred), and with the
    // secondary down the finds fall back to the primary.
    @Test func readsGoToTheSecondaryWritesStayOnThePrimary() async throws {
        let server = try MongoWireServer(replicaSet: "rs0")
        defer { server.stop() }
        try await Self.writeSettledSale(try MongoClient(uri: server.uri))
        let archive = SaleArchive(mongo: try MongoClient(uri: SaleArchive.readURI(server.uri, readPreference: "secondaryPreferred")))
        #expect(SaleArchive.readURI(server.uri, readPreference: "secondaryPreferred").hasSuffix("&readPreference=secondaryPreferred&maxStalenessSeconds=90"))

        // Until the driver has discovered the secondary, a read may go to the primary; then every read goes there.
        var onSecondary = 0
        for _ in 0..<60 where onSecondary == 0 {
            #expect(try await archive.sale(id: Self.saleID)?.summary?.sold == 10)
            onSecondary = try server.commands(named: "find", servedBy: "secondary").count
            if onSecondary == 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(onSecondary > 0, "a find reached the secondary")
        let primaryFinds = try server.commands(named: "find", servedBy: "primary").count
        for _ in 0..<5 { #expect(try await archive.order(id: Self.orderID)?.quantity == 2) }
        #expect(try server.commands(named: "find", servedBy: "primary").count == primaryFinds, "no read went to the primary")
        #expect(try server.commands(named: "find", servedBy: "secondary").count >= onSecondary + 5)
        #expect(try server.commands(named: "insert", servedBy: "secondary").isEmpty && server.commands(named: "update", servedBy: "secondary").isEmpty)
        #expect(try !server.commands(named: "insert", servedBy: "primary").isEmpty || !server.commands(named: "update", servedBy: "primary").isEmpty)

        // The secondary goes away: reads still work, from the primary, once the driver notices (heartbeat 500 ms).
        try server.control(["op": "down", "role": "secondary"])
        let before = try server.commands(named: "find", servedBy: "primary").count
        var answered = false
        for _ in 0..<60 where !answered {
            answered = (try? await archive.order(id: Self.orderID)) != nil
            if !answered { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(answered, "reads fall back to the primary")
        #expect(try server.commands(named: "find", servedBy: "primary").count > before)
    }

    // Redis caches what never changes again: a settled sale once read is answered from Redis (one MongoDB find
    // however often it is read), with the cache's TTL; an order the same; an order id naming an unknown sale
    // reaches MongoDB once and then not at all (negative cache); with at most 2 reads in flight, a burst of 40
    // made-up sale ids is refused beyond them (busy) instead of flooding MongoDB.
    @Test func theCacheAndTheBoundsKeepMongoQuiet() async throws {
        let server = try MongoWireServer()
        defer { server.stop() }
        let redis = try RedisServer()
        try await Self.writeSettledSale(try MongoClient(uri: server.uri))
        var configuration = SaleArchive.Configuration()
        configuration.maxConcurrentReads = 2
        let recorder = Recorder()
        let archive = SaleArchive(mongo: try MongoClient(uri: server.uri), cache: RedisClient(configuration: redis.configuration),
                                  configuration: configuration, observer: recorder)
        let finds = { try server.commands(named: "find").count }

        for _ in 0..<5 { #expect(try await archive.sale(id: Self.saleID)?.definition.stock == 10) }
        #expect(try finds() == 1, "one find for five reads of a settled sale")
        let connection = try redis.connect()
        let ttl = try connection.send("TTL", SaleArchive.saleCacheKey(Self.saleID)).integer ?? -1
        #expect(ttl > 0 && ttl <= 300, "the cached sale expires (TTL \(ttl))")
        for _ in 0..<5 { #expect(try await archive.order(id: Self.orderID)?.customerID == "alice") }
        #expect(try finds() == 2, "one more find for five reads of an order")

        for _ in 0..<5 { #expect(try await archive.order(id: "nosuch.o0123456789abcdef01234567") == nil) }
        #expect(try finds() == 3, "an unknown sale's order costs MongoDB one read")
        #expect(try await archive.order(id: "not-an-order-id") == nil && finds() == 3, "a malformed id never reaches MongoDB")

        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<40 {
                group.addTask {
                    do throws(SaleArchive.Failure) { _ = try await archive.sale(id: "made-up-\(index)") } catch { if case .busy = error { return true } }
                    return false
                }
            }
            var refused = 0
            for await busy in group where busy { refused += 1 }
            return refused
        }
        #expect(outcomes > 0, "reads beyond the bound are refused")
        #expect(try finds() <= 3 + 40 - outcomes)
        let counted = recorder.results.withLock { $0 }
        #expect(counted[.hit, default: 0] >= 8 && counted[.negative, default: 0] >= 4 && counted[.busy, default: 0] == outcomes, "\(counted)")
    }

    // The negative table never holds more than its capacity, oldest out first.
    @Test func theNegativeCacheIsBounded() {
        let cache = NegativeCache(capacity: 3, lifetimeMilliseconds: 60_000)
        for key in ["a", "b", "c", "d", "e"] { cache.insert(key) }
        #expect(cache.count == 3 && !cache.contains("a") && !cache.contains("b") && cache.contains("e"))
        let expired = NegativeCache(capacity: 3, lifetimeMilliseconds: 0)
        expired.insert("x")
        #expect(!expired.contains("x"))
    }
}

private final class Recorder: ArchiveObserver {
    let results = Mutex<[ArchiveReadResult: Int]>([:])
    func archiveRead(_ result: ArchiveReadResult) { results.withLock { $0[result, default: 0] += 1 } }
    func mongoRead(latency: Duration) {}
}
