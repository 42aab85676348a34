import Foundation
import Logging
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

/// Retention may only ever drop what MongoDB holds: the cases a review of retention found.
@Suite("Retention: compensations, reused ids, expiring keys and refused cancellations", .serialized)
struct RetentionSafetyTests {
    // A confirmation MongoDB refuses for good after the sale closed: the summary is re-stored (recomputed) with the compensation, MongoDB's sale document gets the new one, and the sale still retires (stand-in write error).
    @Test func aCompensationAfterCloseKeepsTheSummary() async throws {
        let harness = try OutboxHarness(stock: 10)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let records = await harness.placeOrders((0..<3).map { "late-\($0)" }, quantity: 2)
        #expect(records.count == 3)
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        let before = try await Self.close(harness, ledger)
        #expect(before.final && before.sold == 6 && before.orders == 3)
        try harness.mongoServer.control(["op": "writeError", "command": "update", "code": 121, "errmsg": "Document failed validation",
                                         "match": ["_id": records[1].orderID], "times": 1])
        let pass = try await harness.drainUntilIdle()
        #expect(pass.compensated == 1)

        let stored = try #require(try connection.send("GET", keys.summary).string, "the ledger keeps a summary")
        let summary = try JSONDecoder().decode(SaleSummary.self, from: Data(stored.utf8))
        #expect(summary.final && summary.sold == 4 && summary.orders == 2 && summary.closedReason == .ended)
        let document = try #require(try harness.mongoServer.documents("sales").first)
        let archived = try #require(document["summary"] as? [String: Any], "MongoDB's sale document keeps a summary")
        #expect(archived["sold"] as? Int == 4 && archived["orders"] as? Int == 2)
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).string != nil, "the sale retires")
        #expect((try connection.send("PTTL", keys.meta).integer ?? -1) > 0)
        Self.finish(harness)
    }

    // A sale id reused after the first sale's keys expired stays in the registries and its orders drain: a sale retired with 1 s of retention is created again before the drainer's cleanup of the first one.
    @Test func aReusedSaleIDKeepsItsRegistryEntries() async throws {
        let harness = try OutboxHarness(stock: 4, retentionSeconds: 1)
        let saleID = harness.sale.id
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        _ = await harness.placeOrders(["first-0"])
        _ = try await Self.close(harness, ledger)
        try await harness.drainUntilIdle()
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).string != nil, "the first sale retired")
        try await Self.waitUntilGone(connection, LedgerKeys(saleID: saleID).meta)

        let now = LedgerFixture.nowMilliseconds
        let again = SaleDefinition(id: saleID, name: "Second sale", stock: 5, startsAtMilliseconds: now - 1_000,
                                   endsAtMilliseconds: now + 3_600_000, perCustomerLimit: 2)
        #expect(try ledger.createSale(again))
        try await harness.drainer.drainOnce()  // the pass that cleans up after the first sale
        #expect(try connection.send("ZSCORE", LedgerKeys.allSales, saleID).string != nil, "the new sale stays in the registry of all sales")
        #expect(try connection.send("SISMEMBER", LedgerKeys.activeSales, saleID).integer == 1, "and in the active ones")

        let engine = LedgerFixture.engine(on: harness.redis, instanceID: "second-sale")
        var second: [String] = []
        for customer in ["second-0", "second-1"] {
            if case .confirmed(let record) = await engine.reserve(saleID: saleID, customerID: customer, quantity: 1, idempotencyKey: nil, delivery: "x") {
                second.append(record.orderID)
            }
        }
        #expect(second.count == 2)
        try await harness.drainUntilIdle()
        let stored = Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String })
        #expect(stored.isSuperset(of: second), "the new sale's orders reached MongoDB")
        #expect(try harness.streamState(LedgerKeys(saleID: saleID).outbox).length == 0)
        #expect(try harness.streamState(LedgerKeys(saleID: saleID).commits).length == 0)
        await engine.shutdown()
        Self.finish(harness)
    }

    // Rejection counts added after retirement never leave a key without a TTL: a sale without orders (no stats key at retirement) gets counts while its keys live, and again once they expired.
    @Test func rejectionsAfterRetirementLeaveNoImmortalKey() async throws {
        let harness = try OutboxHarness(retentionSeconds: 2)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        _ = try await Self.close(harness, ledger)
        try await harness.drainUntilIdle()
        #expect((try connection.send("PTTL", keys.meta).integer ?? -1) > 0, "retired")
        try ledger.addRejections(saleID: saleID, ["SALE_ENDED": 3])
        try Self.expectEveryKeyExpires(connection, keys)

        try await Self.waitUntilGone(connection, keys.meta)
        try ledger.addRejections(saleID: saleID, ["SALE_ENDED": 2])
        #expect(try connection.send("EXISTS", keys.stats).integer == 0, "no statistics recreated for a sale that is gone")
        Self.finish(harness)
    }

    // A compensation that reaches a retired sale (keys under the retention TTL) and a later summary read leave no key without the TTL: fail_order on a confirmed order of a retired sale, then `summary`.
    @Test func aCompensationOnARetiredSaleKeepsEveryTTL() async throws {
        let harness = try OutboxHarness(stock: 10)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let records = await harness.placeOrders(["retired-0", "retired-1"])
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        _ = try await Self.close(harness, ledger)
        try await harness.drainUntilIdle()
        #expect((try connection.send("PTTL", keys.meta).integer ?? -1) > 0, "retired")
        let outcome = try ledger.failOrder(saleID: saleID, orderID: records[0].orderID, reason: "refused late")
        if case .failed = outcome {} else { Issue.record("the order was compensated: \(outcome)") }
        let summary = try #require(try ledger.summary(saleID: saleID))
        #expect(summary.final && summary.sold == 1)
        #expect(try connection.send("EXISTS", keys.summary).integer == 1)
        try Self.expectEveryKeyExpires(connection, keys)
        Self.finish(harness)
    }

    // A drainer that read a retiring sale's meta just before its keys expired creates no stream afterwards: `CLIENT PAUSE WRITE` holds a fresh drainer's writes while the keys' last second runs out.
    @Test func aDrainerRacingTheExpiryCreatesNoKey() async throws {
        let harness = try OutboxHarness()
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        _ = await harness.placeOrders(["racing-0"])
        _ = try await Self.close(harness, ledger)
        try await harness.drainUntilIdle()
        #expect((try connection.send("PTTL", keys.meta).integer ?? -1) > 0, "retired")

        let late = try Self.secondDrainer(harness, consumer: "late-drainer")
        try await Self.createIndexes(late.mongo)  // so that its pass goes straight to the sale
        for key in keys.all + [keys.summary] { _ = try connection.send("PEXPIRE", key, "1000", "XX") }
        _ = try connection.send("PEXPIRE", keys.meta, "1000")
        _ = try connection.send("CLIENT", "PAUSE", "2000", "WRITE")
        _ = try? await late.drainer.drainOnce()
        try await Task.sleep(for: .milliseconds(300))
        for key in keys.all + [keys.summary] {
            #expect(try connection.send("EXISTS", key).integer == 0, "\(key) is not created again")
        }
        late.mongo.shutdown()
        Self.finish(harness)
    }

    // Two drainers: one retires the sale only on a fresh read, never on a meta and summary that changed after it wrote them to MongoDB; the second's compensation lands while the stand-in holds the first's sale write.
    @Test func retirementDecidesOnAFreshRead() async throws {
        let harness = try OutboxHarness(stock: 10)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let records = await harness.placeOrders(["stale-0", "stale-1"], quantity: 2)
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        let before = try await Self.close(harness, ledger)
        #expect(before.sold == 4)
        // The other drainer ("B") holds every entry so far.
        for stream in [keys.outbox, keys.commits, keys.stockLog] {
            _ = try connection.send("XGROUP", "CREATE", stream, "mongo-sink", "0", "MKSTREAM")
            _ = try connection.send("XREADGROUP", "GROUP", "mongo-sink", "B", "COUNT", "1000", "STREAMS", stream, ">")
        }
        try harness.mongoServer.control(["op": "delayReply", "command": "update", "collection": "sales", "milliseconds": 1_200, "times": 1])
        async let first = harness.drainer.drainOnce()
        // Once the first drainer's sale write is in, B compensates an order MongoDB refused and acknowledges.
        for _ in 0..<100 where try harness.mongoServer.commands(named: "update").isEmpty {
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = try ledger.failOrder(saleID: saleID, orderID: records[0].orderID, reason: "refused by B's write")
        _ = try ledger.summary(saleID: saleID)
        for stream in [keys.outbox, keys.commits, keys.stockLog] {
            _ = try connection.send("XREADGROUP", "GROUP", "mongo-sink", "B", "COUNT", "1000", "STREAMS", stream, ">")
            let pending = try connection.send("XPENDING", stream, "mongo-sink", "-", "+", "1000").array ?? []
            for entry in pending { _ = try connection.send("XACK", stream, "mongo-sink", entry.array?.first?.string ?? "") }
        }
        _ = try connection.send("XTRIM", keys.outbox, "MAXLEN", "0")
        _ = try connection.send("XTRIM", keys.commits, "MAXLEN", "0")
        _ = try await first
        try await harness.drainUntilIdle()

        let document = try #require(try harness.mongoServer.documents("sales").first)
        let archived = try #require(document["summary"] as? [String: Any], "MongoDB's sale document keeps a summary")
        #expect(archived["sold"] as? Int == 2, "MongoDB has the summary after the compensation")
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).string != nil, "the sale retires")
        Self.finish(harness)
    }

    // A cancellation MongoDB refuses for good stays in the outbox (never acknowledged) and keeps the sale from retiring until it reaches MongoDB: a permanent write error on the cancelled order's document, 3 times.
    @Test func aRefusedCancellationIsNeverDropped() async throws {
        let harness = try OutboxHarness(stock: 10, backoffBaseMilliseconds: 20, backoffCapMilliseconds: 100)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let records = await harness.placeOrders(["keep-0", "keep-1"])
        try await harness.drainUntilIdle()
        let victim = records[0]
        _ = try await harness.engine.cancel(saleID: saleID, orderID: victim.orderID, customerID: victim.customerID)
        try harness.mongoServer.control(["op": "writeError", "command": "update", "code": 121, "errmsg": "Document failed validation",
                                         "match": ["_id": victim.orderID], "times": 3])
        try await harness.drainer.drainOnce()
        #expect(try harness.streamState(keys.outbox).length == 1, "the refused cancellation stays in the outbox")
        #expect(harness.drainer.status.compensated == 0)
        #expect(harness.drainer.status.heldCancellations == 1, "counted for /readyz")
        // It holds back no order placed after it (bounded: 5 passes).
        let later = try #require(await harness.placeOrders(["keep-2"]).first)
        for _ in 0..<5 where try !harness.mongoServer.documents("orders").contains(where: { $0["_id"] as? String == later.orderID }) {
            try await harness.drainer.drainOnce()
        }
        #expect(try harness.mongoServer.documents("orders").contains { $0["_id"] as? String == later.orderID })
        #expect(try harness.streamState(keys.outbox).length == 1, "only the cancellation waits")

        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        _ = try await Self.close(harness, ledger)
        try await harness.drainer.drainOnce()
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).string == nil, "no retirement while it is pending")
        #expect(try connection.send("PTTL", keys.meta).integer == -1)

        // The refusal passes: the cancellation reaches MongoDB (bounded: 100 passes), then the sale retires.
        var status: String?
        for _ in 0..<100 {
            try await harness.drainer.drainOnce()
            status = try harness.mongoServer.documents("orders").first { $0["_id"] as? String == victim.orderID }?["status"] as? String
            if status == "cancelled" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(status == "cancelled", "MongoDB knows the order was cancelled")
        try await harness.drainUntilIdle()
        #expect(try harness.streamState(keys.outbox) == (0, 0))
        #expect(harness.drainer.status.heldCancellations == 0)
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).string != nil, "the sale retires")
        Self.finish(harness)
    }

    // The commit log names a batch's orders by id and the drainer reads their records from the ledger, so
    // retirement must never give the records a TTL while an entry names them: a closed, summarized sale whose
    // only commit-log entries are held by a dead consumer does not retire (the retire script answers BACKLOG, no
    // key gets a TTL), and once they are claimed and written it retires with every order in MongoDB.
    @Test func retirementWaitsForTheCommitLog() async throws {
        let harness = try OutboxHarness(stock: 10, claimIdleMilliseconds: 1_500)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let records = await harness.placeOrders((0..<3).map { "named-\($0)" })
        #expect(records.count == 3)
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        _ = try await Self.close(harness, ledger)
        // A dead consumer holds every commit-log entry: delivered, never acknowledged.
        _ = try connection.send("XGROUP", "CREATE", keys.commits, "mongo-sink", "0", "MKSTREAM")
        _ = try connection.send("XREADGROUP", "GROUP", "mongo-sink", "dead", "COUNT", "100", "STREAMS", keys.commits, ">")
        #expect(try harness.streamState(keys.commits).pending == 3)

        try await harness.drainUntilIdle()
        #expect(try harness.mongoServer.documents("sales").count == 1, "the sale document and the stock log drained")
        #expect(try harness.mongoServer.documents("orders").isEmpty)
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).isNull, "not retired while the log names orders")
        var arguments = RedisCommand()
        arguments.append(3_600)
        arguments.append("mongo-sink")
        arguments.append(try #require(try connection.send("GET", keys.summary).string))
        for (field, value) in Ledger.pairs(try connection.send("HGETALL", keys.meta).array ?? []).sorted(by: { $0.key < $1.key }) {
            arguments.append(field)
            arguments.append(value)
        }
        let reply = try connection.evaluate(LedgerScripts.retireSale, keys: keys.retained, arguments: arguments)
        #expect(reply.array?.first?.string == "BACKLOG", "\(reply)")
        for key in keys.all + [keys.summary] where try connection.send("EXISTS", key).integer == 1 {
            #expect(try connection.send("PTTL", key).integer == -1, "\(key) has no TTL yet")
        }

        try await Task.sleep(for: .milliseconds(1_600))
        try await harness.drainUntilIdle()
        #expect(Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        #expect(try harness.streamState(keys.commits) == (0, 0))
        #expect(try connection.send("ZSCORE", LedgerKeys.retiringSales, saleID).string != nil, "the sale retires once they are written")
        try Self.expectEveryKeyExpires(connection, keys)
        Self.finish(harness)
    }

    // MARK: Helpers

    /// Returns the engine's leases, closes the sale and stores its final summary.
    static func close(_ harness: OutboxHarness, _ ledger: Ledger) async throws -> SaleSummary {
        await harness.engine.shutdown()
        _ = try ledger.closeSale(saleID: harness.sale.id, mode: "ended")
        let summary = try #require(try ledger.summary(saleID: harness.sale.id))
        // The summary stored by the ledger's script is the one Swift computes from an atomic snapshot.
        #expect(summary == SaleSummary(snapshot: try LedgerFixture.snapshot(on: harness.redis, saleID: harness.sale.id)))
        return summary
    }

    /// Every key of the sale that exists carries a TTL.
    static func expectEveryKeyExpires(_ connection: RedisConnection, _ keys: LedgerKeys, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for key in keys.all + [keys.summary] where try connection.send("EXISTS", key).integer == 1 {
            let ttl = try connection.send("PTTL", key).integer ?? -2
            #expect(ttl > 0, "\(key) expires (PTTL \(ttl))", sourceLocation: sourceLocation)
        }
    }

    /// Waits (at most 5 s) until `key` expired.
    static func waitUntilGone(_ connection: RedisConnection, _ key: String) async throws {
        for _ in 0..<100 where try connection.send("EXISTS", key).integer == 1 {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try connection.send("EXISTS", key).integer == 0, "\(key) expired")
    }

    static func secondDrainer(_ harness: OutboxHarness, consumer: String) throws -> (drainer: OutboxDrainer, mongo: MongoClient) {
        var logger = Logger(label: "test.outbox.\(consumer)")
        logger.logLevel = .critical
        let mongo = try MongoClient(uri: harness.mongoServer.uri, threads: 1)
        let drainer = OutboxDrainer(redis: harness.client, mongo: mongo, configuration: OutboxDrainer.Configuration(consumer: consumer), logger: logger)
        return (drainer, mongo)
    }

    static func createIndexes(_ mongo: MongoClient) async throws {
        for (collection, indexes) in OutboxDocuments.indexes { try await mongo.createIndexes(collection, indexes) }
    }

    /// The harness's engine was shut down by ``close(_:_:)``: stop the rest.
    static func finish(_ harness: OutboxHarness) {
        harness.mongo.shutdown()
        harness.client.shutdown()
        harness.mongoServer.stop()
    }
}
