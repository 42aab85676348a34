import Foundation
import Logging
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("Retention: a settled, drained sale leaves Redis", .serialized)
struct RetentionTests {
    /// Orders committed straight through the ledger (FLASHSALE_RETENTION_ORDERS overrides, e.g. 100000, with
    /// FLASHSALE_TEST_MONGO_SOCKET_TIMEOUT_MS=60000: the stand-in scans its collections linearly).
    static var orderCount: Int {
        ProcessInfo.processInfo.environment["FLASHSALE_RETENTION_ORDERS"].flatMap(Int.init) ?? 600
    }

    // A sale with many orders closes and drains to MongoDB: the stock log is trimmed to its last
    // acknowledged entry, every key of the sale gets the retention TTL (once), and when it runs out the
    // sale leaves the registries and the drainer forgets it. Prints Redis memory per order before and after.
    @Test func aDrainedSaleExpires() async throws {
        let orders = Self.orderCount
        let harness = try OutboxHarness(stock: orders, batchSize: 256, retentionSeconds: 2)
        let saleID = harness.sale.id
        let keys = LedgerKeys(saleID: saleID)
        let connection = try harness.redis.connect()
        let ledger = Ledger(connection: connection)
        var committed = 0
        var shard = 0
        while committed < orders {
            shard += 1
            guard case .granted(let fence, let units, _, _) = try ledger.acquireLease(
                saleID: saleID, owner: "bulk", shardID: "bulk#\(shard)", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 500), ttlMilliseconds: 60_000
            ) else { Issue.record("a lease was expected"); return }
            let batch = (0..<units).map { index in
                PendingCommit(orderID: "\(saleID).o\(String(format: "%024x", committed + index))", shardID: "bulk#\(shard)", fence: fence,
                              customerID: "customer-\(committed + index)", quantity: 1, idempotencyKey: "key-\(committed + index)", delivery: "fs1.k1.sealed")
            }
            let outcomes = try ledger.commit(saleID: saleID, owner: "bulk", batch)
            #expect(outcomes.allSatisfy { if case .committed = $0 { true } else { false } })
            committed += units
        }
        let closed = try LedgerFixture.snapshot(on: harness.redis, saleID: saleID)
        #expect(closed.status == .closed && closed.closedReason == .soldOut && closed.sold == orders)
        #expect(try ledger.summary(saleID: saleID)?.final == true)
        let before = try Self.memory(connection, keys)

        try await Self.drainPatiently(harness, passes: orders / 128 + 20)
        let after = try Self.memory(connection, keys)
        let stockLogLength = try connection.send(RedisCommand("XLEN", keys.stockLog)).integer ?? -1
        #expect(stockLogLength == 1, "the stock log keeps only its last acknowledged entry")
        #expect(try connection.send(RedisCommand("XLEN", keys.outbox)).integer == 0)
        #expect(try connection.send(RedisCommand("XLEN", keys.commits)).integer == 0)
        for key in keys.all + [keys.summary] where try connection.send(RedisCommand("EXISTS", key)).integer == 1 {
            let ttl = try connection.send(RedisCommand("TTL", key)).integer ?? -2
            #expect(ttl > 0 && ttl <= 2, "\(key) expires after the retention period (TTL \(ttl))")
        }
        #expect(try connection.send(RedisCommand("ZSCORE", LedgerKeys.retiringSales, saleID)).string != nil)
        print("retention: \(orders) orders; Redis bytes (MEMORY USAGE) before drain \(before.total) (\(before.total / orders) per order), after drain \(after.total) (\(after.total / orders) per order)")
        print("retention: per key before \(before.byKey.sorted { $0.key < $1.key })")
        print("retention: per key after  \(after.byKey.sorted { $0.key < $1.key })")
        #expect(after.total < before.total, "draining shrinks the sale's keys")

        // The retention runs out: the keys are gone, the sale leaves the registries and the drainer's memory.
        try await Task.sleep(for: .milliseconds(2_300))
        try await Self.pass(harness)  // the registry entry goes
        try await Self.pass(harness)  // and the drainer forgets the sale
        for key in keys.all + [keys.summary] {
            #expect(try connection.send(RedisCommand("EXISTS", key)).integer == 0, "\(key) expired")
        }
        #expect(try connection.send(RedisCommand("ZSCORE", LedgerKeys.allSales, saleID)).string == nil)
        #expect(try connection.send(RedisCommand("ZSCORE", LedgerKeys.retiringSales, saleID)).string == nil)
        #expect(try connection.send(RedisCommand("SISMEMBER", LedgerKeys.activeSales, saleID)).integer == 0)
        #expect(harness.drainer.trackedSaleCount == 0)

        // Every order is still readable by id once Redis has forgotten the sale (a sample of up to 500, evenly
        // spread), from MongoDB the first time and from the Redis cache afterwards: p99 of both paths printed.
        let archive = SaleArchive(mongo: harness.mongo, cache: harness.client)
        let sample = stride(from: 0, to: orders, by: max(1, orders / 500)).map { $0 }
        var uncached: [Duration] = []
        var cached: [Duration] = []
        for index in sample {
            let orderID = "\(saleID).o\(String(format: "%024x", index))"
            for pass in 0..<2 {
                let started = ContinuousClock.now
                let record = try await archive.order(id: orderID)
                let took = ContinuousClock.now - started
                #expect(record?.customerID == "customer-\(index)" && record?.status == .confirmed, "\(orderID) readable after retention")
                if pass == 0 { uncached.append(took) } else { cached.append(took) }
            }
        }
        func p99(_ durations: [Duration]) -> String {
            let sorted = durations.sorted()
            let value = sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
            return String(format: "%.2f ms", Double(value.components.attoseconds) / 1e15 + Double(value.components.seconds) * 1e3)
        }
        print("retention: \(sample.count) of \(orders) orders read by id after retention: p99 \(p99(uncached)) from MongoDB (the wire-level stand-in), \(p99(cached)) from the Redis cache")
        await harness.shutdown()
    }

    // The stock log of an open sale is trimmed as it drains, never past an entry still pending.
    @Test func theStockLogIsTrimmedWhileTheSaleRuns() async throws {
        let harness = try OutboxHarness(stock: 100)
        let keys = LedgerKeys(saleID: harness.sale.id)
        _ = await harness.placeOrders((0..<10).map { "customer-\($0)" })
        try await harness.drainUntilIdle()
        let connection = try harness.redis.connect()
        #expect(try connection.send(RedisCommand("XLEN", keys.stockLog)).integer == 1)
        _ = await harness.placeOrders((10..<20).map { "customer-\($0)" })
        let grown = try connection.send(RedisCommand("XLEN", keys.stockLog)).integer ?? 0
        #expect(grown > 1, "new entries wait for the drainer")
        try await harness.drainUntilIdle()
        #expect(try connection.send(RedisCommand("XLEN", keys.stockLog)).integer == 1)
        let events = try harness.mongoServer.documents("stock_events")
        #expect(events.filter { $0["reason"] as? String == "commit" }.count >= 2, "every entry reached MongoDB before it was trimmed")
        await harness.shutdown()
    }

    /// Drains until a pass moves nothing. The wire-level server is slow with large batches on a busy
    /// machine and may drop a connection: that is a transient error, which the drainer retries as it
    /// does in production (bounded: 20 such errors).
    static func drainPatiently(_ harness: OutboxHarness, passes: Int) async throws {
        var transient = 0
        for _ in 0..<passes {
            do {
                let pass = try await harness.drainer.drainOnce()
                if pass.moved == 0 && pass.deferred == 0 { return }
            } catch let error as MongoError where error.kind == .transient && transient < 20 {
                transient += 1
            }
        }
        Issue.record("the outbox did not drain within \(passes) passes")
    }

    /// One drainer pass, repeated when the wire-level server drops its connection (a transient error, which
    /// the drainer retries in production too; at most 5 times here).
    static func pass(_ harness: OutboxHarness) async throws {
        for attempt in 1...5 {
            do {
                _ = try await harness.drainer.drainOnce()
                return
            } catch let error as MongoError where error.kind == .transient && attempt < 5 {
                continue
            }
        }
    }

    static func memory(_ connection: RedisConnection, _ keys: LedgerKeys) throws -> (total: Int, byKey: [String: Int]) {
        var byKey: [String: Int] = [:]
        for key in keys.all + [keys.summary] {
            let reply = try connection.send(RedisCommand("MEMORY", "USAGE", key, "SAMPLES", "0")).throwingServerError()
            if let bytes = reply.integer { byKey[String(key.split(separator: ":").last ?? "")] = Int(bytes) }
        }
        return (byKey.values.reduce(0, +), byKey)
    }
}
