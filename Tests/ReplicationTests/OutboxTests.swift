import Foundation
import Logging
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

/// A sale with orders in the outbox, a drainer and the wire-level MongoDB server for one test.
struct OutboxHarness {
    let redis: RedisServer
    /// The wire-level server; nil when the harness runs against a live MongoDB (`MONGO_URI`).
    let mongoServer: MongoWireServer!
    let client: RedisClient
    let mongo: MongoClient
    let drainer: OutboxDrainer
    let sale: SaleDefinition
    let engine: ReservationService

    /// - Parameter liveURI: a live MongoDB to use (in a fresh database) instead of the wire-level server.
    init(stock: Int = 20, batchSize: Int = 256, claimIdleMilliseconds: Int = 30_000, retentionSeconds: Int = 3_600,
         backoffBaseMilliseconds: Int = 100, backoffCapMilliseconds: Int = 10_000, liveURI: String? = nil) throws {
        redis = try RedisServer()
        client = RedisClient(configuration: redis.configuration, name: "test-outbox")
        if let liveURI {
            mongoServer = nil
            mongo = try MongoClient(uri: liveURI, database: "flashsale_test_\(UUID().uuidString.prefix(8).lowercased())", threads: 1)
        } else {
            mongoServer = try MongoWireServer()
            mongo = try MongoClient(uri: mongoServer.uri, threads: 1)
        }
        var configuration = OutboxDrainer.Configuration(consumer: "test-drainer")
        configuration.batchSize = batchSize
        configuration.claimIdleMilliseconds = claimIdleMilliseconds
        configuration.retentionSeconds = retentionSeconds
        configuration.backoffBaseMilliseconds = backoffBaseMilliseconds
        configuration.backoffCapMilliseconds = backoffCapMilliseconds
        var logger = Logger(label: "test.outbox")
        logger.logLevel = .critical
        drainer = OutboxDrainer(redis: client, mongo: mongo, configuration: configuration, logger: logger)
        sale = try LedgerFixture.createOpenSale(on: redis, stock: stock, limit: 2)
        engine = LedgerFixture.engine(on: redis, instanceID: "outbox-test")
    }

    /// Places one order per customer and answers the confirmed records.
    func placeOrders(_ customers: [String], quantity: Int = 1, key: String? = nil) async -> [OrderRecord] {
        var records: [OrderRecord] = []
        for customer in customers {
            if case .confirmed(let record) = await engine.reserve(saleID: sale.id, customerID: customer, quantity: quantity,
                                                                   idempotencyKey: key, delivery: "sealed-\(customer)") {
                records.append(record)
            }
        }
        return records
    }

    /// Drains until a pass moves nothing (bounded: at most `passes` passes); answers the summed passes.
    @discardableResult
    func drainUntilIdle(passes: Int = 20) async throws -> OutboxDrainer.Pass {
        var total = OutboxDrainer.Pass()
        for _ in 0..<passes {
            let pass = try await drainer.drainOnce()
            total.orders += pass.orders
            total.stockEvents += pass.stockEvents
            total.sales += pass.sales
            total.compensated += pass.compensated
            total.deferred += pass.deferred
            if pass.moved == 0 && pass.deferred == 0 { return total }
        }
        Issue.record("the outbox did not drain within \(passes) passes")
        return total
    }

    func streamState(_ stream: String) throws -> (length: Int64, pending: Int64) {
        let connection = try redis.connect()
        let length = try connection.send("XLEN", stream).integer ?? -1
        let pending = try connection.send("XPENDING", stream, "mongo-sink").array?.first?.integer ?? -1
        return (length, pending)
    }

    func shutdown() async {
        await engine.shutdown()
        if mongoServer == nil { _ = try? await mongo.command(["dropDatabase": .int32(1)]) }
        mongo.shutdown()
        client.shutdown()
        mongoServer?.stop()
    }
}

@Suite("Outbox to MongoDB over the wire protocol (libmongoc against mockupdb)", .serialized)
struct OutboxTests {
    @Test func drainsOrdersWithIdempotentMajorityUpserts() async throws {
        let harness = try OutboxHarness()
        let records = await harness.placeOrders((0..<6).map { "customer-\($0)" })
        #expect(records.count == 6)
        _ = try await harness.engine.cancel(saleID: harness.sale.id, orderID: records[0].orderID, customerID: records[0].customerID)

        let pass = try await harness.drainUntilIdle()
        #expect(pass.orders == 7, "six confirmations and one cancellation")
        #expect(pass.compensated == 0)

        let documents = try harness.mongoServer.documents("orders")
        #expect(Set(documents.compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        let byID = Dictionary(uniqueKeysWithValues: documents.map { ($0["_id"] as! String, $0) })
        #expect(byID[records[0].orderID]?["status"] as? String == "cancelled")
        for record in records.dropFirst() {
            let document = try #require(byID[record.orderID])
            #expect(document["status"] as? String == "confirmed")
            #expect(document["customerId"] as? String == record.customerID)
            #expect(document["saleId"] as? String == harness.sale.id)
            #expect(document["delivery"] as? String == "sealed-\(record.customerID)")
            #expect((document["quantity"] as? NSNumber)?.intValue == 1)
        }

        // The exact commands: updates addressed by _id, upsert, unordered, write concern majority.
        let updates = try harness.mongoServer.commands(named: "update").filter { $0["update"] as? String == "orders" }
        #expect(!updates.isEmpty)
        for command in updates {
            #expect(command["ordered"] as? Bool == false)
            let concern = try #require(command["writeConcern"] as? [String: Any])
            #expect(concern["w"] as? String == "majority")
            for statement in command["updates"] as? [[String: Any]] ?? [] {
                #expect(statement["upsert"] as? Bool == true)
                let query = try #require(statement["q"] as? [String: Any])
                #expect(query.keys.sorted() == ["_id"])
                #expect(records.contains { $0.orderID == query["_id"] as? String })
            }
        }
        // Stock events and the sale document followed the same path; the indexes exist.
        let events = try harness.mongoServer.documents("stock_events")
        #expect(events.contains { $0["reason"] as? String == "created" })
        #expect(events.contains { $0["reason"] as? String == "cancel" })
        let sales = try harness.mongoServer.documents("sales")
        #expect(sales.count == 1 && sales.first?["_id"] as? String == harness.sale.id)
        let indexNames = try (harness.mongoServer.control(["op": "indexes", "collection": "orders"])["indexes"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(Set(indexNames).isSuperset(of: ["sale_customer", "sale_created", "customer_created"]))

        // Acknowledged and removed: nothing pending, the outbox and the commit log are empty.
        let outbox = try harness.streamState(LedgerKeys(saleID: harness.sale.id).outbox)
        #expect(outbox.length == 0 && outbox.pending == 0)
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).commits) == (0, 0))
        let stockLog = try harness.streamState(LedgerKeys(saleID: harness.sale.id).stockLog)
        #expect(stockLog.pending == 0 && stockLog.length > 0, "the stock log is acknowledged and kept")
        await harness.shutdown()
    }

    // Two drainers may write an order's cancellation before its confirmation: the document ends complete
    // and cancelled either way, and replays change nothing.
    @Test func eventsOfOneOrderCommuteAndReplay() async throws {
        let harness = try OutboxHarness()
        let order = StreamEntry(id: "100-0", fields: [
            "type": "order", "orderId": "o-1", "customer": "c-1", "quantity": "2", "at": "1000", "delivery": "fs1.k1.abc",
            "key": "k", "shard": "s-0", "fence": "7", "instance": "A", "source": "bucket",
        ])
        var cancelFields = order.fields
        cancelFields["type"] = "cancel"
        cancelFields["at"] = "2000"
        cancelFields["createdAt"] = "1000"
        let cancel = StreamEntry(id: "101-0", fields: cancelFields)
        let writes = [cancel, order, cancel, order].compactMap { OutboxDocuments.orderWrites(saleID: "s", entry: $0)?.first?.write }
        for write in writes { _ = try await harness.mongo.bulkWrite("orders", [write]) }
        let documents = try harness.mongoServer.documents("orders")
        #expect(documents.count == 1)
        let document = try #require(documents.first)
        #expect(document["status"] as? String == "cancelled")
        #expect(document["delivery"] as? String == "fs1.k1.abc")
        #expect(document["idempotencyKey"] as? String == "k")
        #expect((document["fence"] as? NSNumber)?.intValue == 7)
        let record = try LedgerRebuild.record(from: try #require(try await harness.mongo.find("orders").first))
        #expect(record.status == .cancelled && record.createdAtMilliseconds == 1_000 && record.cancelledAtMilliseconds == 2_000)
        await harness.shutdown()
    }

    // Entries a consumer read and never acknowledged (it died) are claimed once idle and written.
    @Test func aDeadConsumersEntriesAreClaimed() async throws {
        // Idle time long enough that the first pass (index creation, the sale document) cannot outlast it on a busy machine.
        let harness = try OutboxHarness(claimIdleMilliseconds: 1_500)
        let records = await harness.placeOrders((0..<4).map { "orphan-\($0)" })
        let outbox = LedgerKeys(saleID: harness.sale.id).commits
        let connection = try harness.redis.connect()
        _ = try connection.send("XGROUP", "CREATE", outbox, "mongo-sink", "0", "MKSTREAM")
        let taken = try connection.send("XREADGROUP", "GROUP", "mongo-sink", "dead-instance", "COUNT", "100", "STREAMS", outbox, ">")
        #expect(taken.array?.first?.array?.last?.array?.count == 4, "the dead consumer holds all four entries")
        #expect(try harness.streamState(outbox).pending == 4)

        try await harness.drainer.drainOnce()
        #expect(try harness.mongoServer.documents("orders").isEmpty, "not claimed before they are idle long enough")
        try await Task.sleep(for: .milliseconds(1_600))
        try await harness.drainUntilIdle()
        #expect(Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        #expect(try harness.streamState(outbox) == (0, 0))
        await harness.shutdown()
    }

    // Two drainers in one consumer group (two instances) write every order exactly once between them.
    @Test func twoDrainersShareTheOutbox() async throws {
        let harness = try OutboxHarness(batchSize: 3)
        let records = await harness.placeOrders((0..<12).map { "shared-\($0)" })
        var logger = Logger(label: "test.outbox.second")
        logger.logLevel = .critical
        let secondMongo = try MongoClient(uri: harness.mongoServer.uri, threads: 1)
        var configuration = OutboxDrainer.Configuration(consumer: "second-drainer")
        configuration.batchSize = 3
        let second = OutboxDrainer(redis: harness.client, mongo: secondMongo, configuration: configuration, logger: logger)
        for _ in 0..<20 {
            async let first = harness.drainer.drainOnce()
            async let other = second.drainOnce()
            let (a, b) = try await (first, other)
            if a.moved == 0 && b.moved == 0 { break }
        }
        #expect(harness.drainer.status.ordersWritten > 0 && second.status.ordersWritten > 0, "both drainers took a share")
        #expect(harness.drainer.status.ordersWritten + second.status.ordersWritten == records.count)
        #expect(Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).commits) == (0, 0))
        secondMongo.shutdown()
        await harness.shutdown()
    }

    @Test func nothingIsLostWhileMongoIsUnreachable() async throws {
        let harness = try OutboxHarness()
        try harness.mongoServer.control(["op": "down"])
        let records = await harness.placeOrders((0..<5).map { "down-\($0)" })
        #expect(records.count == 5)
        for _ in 0..<3 {
            await #expect(throws: MongoError.self) { try await harness.drainer.drainOnce() }
        }
        #expect(harness.drainer.status.consecutiveFailures == 3)
        let keys = LedgerKeys(saleID: harness.sale.id)
        #expect(try harness.streamState(keys.commits).length == 5, "the orders wait in the commit log")

        try harness.mongoServer.control(["op": "up"])
        try await harness.drainUntilIdle()
        let stored = Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String })
        #expect(stored == Set(records.map(\.orderID)))
        #expect(try harness.streamState(keys.commits) == (0, 0))
        #expect(harness.drainer.status.lastError == nil)
        await harness.shutdown()
    }

    @Test func aReplyLostAfterTheWriteDoesNotDuplicate() async throws {
        let harness = try OutboxHarness()
        // One order and a drain first, so that the sale document is current and the next update is the orders'.
        var records = await harness.placeOrders(["lost-first"])
        try await harness.drainUntilIdle()
        records += await harness.placeOrders((0..<4).map { "lost-\($0)" })
        // The orders write is applied, then the connection drops before the reply.
        try harness.mongoServer.control(["op": "hangupAfterWrite", "command": "update", "times": 1])
        var failures = 0
        for _ in 0..<5 {
            do {
                try await harness.drainUntilIdle(passes: 10)
                break
            } catch let error as MongoError {
                #expect(error.isTransient, "a dropped connection is transient: \(error)")
                failures += 1
            }
        }
        #expect(failures >= 1, "the dropped reply surfaced as an error")
        let documents = try harness.mongoServer.documents("orders")
        #expect(documents.count == records.count, "one document per order, no duplicate")
        #expect(Set(documents.compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        // The batch was sent twice, with the same _ids: the replay was a no-op upsert.
        let orderUpdates = try harness.mongoServer.commands(named: "update").filter { $0["update"] as? String == "orders" }
        #expect(orderUpdates.count >= 3, "the first drain, the write whose reply was lost, its replay")
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).commits) == (0, 0))
        await harness.shutdown()
    }

    @Test func notWritablePrimaryIsRetried() async throws {
        let harness = try OutboxHarness()
        let records = await harness.placeOrders((0..<3).map { "election-\($0)" })
        try harness.mongoServer.control(["op": "fail", "command": "update", "code": 10107, "errmsg": "not primary", "times": 1])
        do {
            try await harness.drainer.drainOnce()
            Issue.record("the scripted NotWritablePrimary must surface")
        } catch let error as MongoError {
            #expect(error.code == 10107 && error.isTransient)
        }
        try await harness.drainUntilIdle()
        #expect(Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String }) == Set(records.map(\.orderID)))
        #expect(harness.drainer.status.compensated == 0)
        await harness.shutdown()
    }

    @Test func aPermanentRefusalRunsTheCompensation() async throws {
        let harness = try OutboxHarness(stock: 10)
        let records = await harness.placeOrders((0..<3).map { "refused-\($0)" }, quantity: 2)
        #expect(records.count == 3)
        let victim = records[1]
        let before = try LedgerFixture.snapshot(on: harness.redis, saleID: harness.sale.id)
        try harness.mongoServer.control(["op": "writeError", "command": "update", "code": 121,
                                         "errmsg": "Document failed validation", "match": ["_id": victim.orderID], "times": 1])
        let pass = try await harness.drainUntilIdle()
        #expect(pass.compensated == 1)

        let after = try LedgerFixture.snapshot(on: harness.redis, saleID: harness.sale.id)
        #expect(after.sold == before.sold - 2, "the refused order's units left sold")
        #expect(after.pool + after.leases.reduce(0) { $0 + $1.remaining } + after.sold == harness.sale.stock)
        let failed = try #require(try LedgerFixture.orders(on: harness.redis, saleID: harness.sale.id).first { $0.orderID == victim.orderID })
        #expect(failed.status == .failed)
        #expect(failed.failureReason?.contains("121") == true)
        #expect(try LedgerFixture.purchases(on: harness.redis, saleID: harness.sale.id)[victim.customerID] == nil)
        let stored = Set(try harness.mongoServer.documents("orders").compactMap { $0["_id"] as? String })
        #expect(stored == Set(records.map(\.orderID)).subtracting([victim.orderID]))
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).outbox) == (0, 0))
        let events = try harness.mongoServer.documents("stock_events")
        #expect(events.contains { $0["reason"] as? String == "order_failed" })
        // Cancelling the failed order gives nothing back a second time.
        let cancelled = try await harness.engine.cancel(saleID: harness.sale.id, orderID: victim.orderID, customerID: victim.customerID)
        #expect(cancelled.status == .failed)
        #expect(try LedgerFixture.snapshot(on: harness.redis, saleID: harness.sale.id).sold == after.sold)
        // The units are sellable again: the customer can buy once more.
        let retry = await harness.engine.reserve(saleID: harness.sale.id, customerID: victim.customerID, quantity: 2, idempotencyKey: nil, delivery: "x")
        if case .confirmed = retry {} else { Issue.record("the customer's count was released: \(retry)") }
        await harness.shutdown()
    }

    // A commit batch is one commit-log entry naming its orders: each becomes its own document (in the batch's
    // order) from its record in the ledger, and MongoDB refusing one of them for good compensates that order alone.
    @Test func aBatchEntryIsWrittenOrderByOrder() async throws {
        let harness = try OutboxHarness(stock: 10)
        let ledger = Ledger(connection: try harness.redis.connect())
        guard case .granted(let fence, _, _, _) = try ledger.acquireLease(saleID: harness.sale.id, owner: "batcher", shardID: "batcher#1", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 10), ttlMilliseconds: 60_000) else {
            Issue.record("lease expected"); return
        }
        let ids = (0..<4).map { "\(harness.sale.id).b\($0)" }
        let outcomes = try ledger.commit(saleID: harness.sale.id, owner: "batcher", ids.enumerated().map { index, id in
            PendingCommit(orderID: id, shardID: "batcher#1", fence: fence, customerID: "batch-\(index)", quantity: 1, idempotencyKey: "", delivery: "sealed-\(index)")
        })
        #expect(outcomes.allSatisfy { if case .committed = $0 { true } else { false } }, "\(outcomes)")
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).commits).length == 1)
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).outbox).length == 0, "the batch's records are not copied into the outbox")
        try harness.mongoServer.control(["op": "writeError", "command": "update", "code": 121,
                                         "errmsg": "Document failed validation", "match": ["_id": ids[2]], "times": 1])
        let pass = try await harness.drainUntilIdle()
        #expect(pass.compensated == 1 && pass.orders == 3)
        let documents = try harness.mongoServer.documents("orders")
        #expect(Set(documents.compactMap { $0["_id"] as? String }) == Set(ids).subtracting([ids[2]]))
        let byID = Dictionary(uniqueKeysWithValues: documents.map { ($0["_id"] as! String, $0) })
        #expect(Set(documents.compactMap { $0["outboxId"] as? String }).count == 1, "one entry")
        #expect((byID[ids[3]]?["outboxIndex"] as? NSNumber)?.intValue == 3)
        #expect(byID[ids[1]]?["delivery"] as? String == "sealed-1" && byID[ids[1]]?["customerId"] as? String == "batch-1")
        #expect(try LedgerFixture.orders(on: harness.redis, saleID: harness.sale.id).first { $0.orderID == ids[2] }?.status == .failed)
        #expect(try harness.streamState(LedgerKeys(saleID: harness.sale.id).commits) == (0, 0))
        let after = try LedgerFixture.snapshot(on: harness.redis, saleID: harness.sale.id)
        #expect(after.sold == 3 && after.invariantHolds)
        await harness.shutdown()
    }

    @Test func theLedgerRebuildsFromMongo() async throws {
        let harness = try OutboxHarness(stock: 30)
        let saleID = harness.sale.id
        var records = await harness.placeOrders((0..<8).map { "rebuild-\($0)" }, quantity: 2)
        records += await harness.placeOrders(["keyed-0", "keyed-1"], quantity: 1, key: "checkout-1")
        _ = try await harness.engine.cancel(saleID: saleID, orderID: records[2].orderID, customerID: records[2].customerID)
        _ = await harness.placeOrders(["rebuild-2"], quantity: 1)
        await harness.engine.shutdown()  // leases back to the pool: the ledger is at rest
        // Close the sale and store its final summary: the sale document carries it.
        let ledger = Ledger(connection: try harness.redis.connect())
        _ = try ledger.closeSale(saleID: saleID, mode: "ended")
        let summary = try #require(try ledger.summary(saleID: saleID))
        #expect(summary.final)
        try await harness.drainUntilIdle()
        let saleDocument = try #require(try harness.mongoServer.documents("sales").first)
        #expect(saleDocument["status"] as? String == "closed")
        #expect((saleDocument["summary"] as? [String: Any])?["final"] as? Bool == true)
        #expect((saleDocument["summary"] as? [String: Any])?["sold"] as? Int == summary.sold)
        // A closed, summarized, drained sale is finished: later passes send MongoDB nothing for it.
        let commandsBefore = try harness.mongoServer.commands().count
        try await harness.drainer.drainOnce()
        #expect(try harness.mongoServer.commands().count == commandsBefore)

        let before = try LedgerState(server: harness.redis, saleID: saleID)
        #expect(before.sold == 8 * 2 - 2 + 2 + 1)
        #expect(before.summary != nil)
        #expect(before.pastOrders.count == 1 && before.pastOrders.first?.hasSuffix(records[2].orderID) == true, "the cancelled order")
        #expect(before.users["rebuild-2"]?.split(separator: " ").count == 2, "one unit, held by the second order")
        #expect(before.users["rebuild-3"] == "2 " + records[3].orderID)

        let connection = try harness.redis.connect()
        _ = try connection.send("FLUSHALL")
        let rebuild = LedgerRebuild(redis: harness.client, mongo: harness.mongo)
        let report = try await rebuild.rebuild(saleID: saleID, force: false)
        #expect(report.sold == before.sold && report.orders == before.orders.count)
        let after = try LedgerState(server: harness.redis, saleID: saleID)
        #expect(after == before)

        // A live ledger is refused without --force.
        await #expect(throws: LedgerRebuild.Failure.self) { try await rebuild.rebuild(saleID: saleID, force: false) }
        _ = try await rebuild.rebuild(saleID: saleID, force: true)
        #expect(try LedgerState(server: harness.redis, saleID: saleID) == before)
        harness.mongo.shutdown()
        harness.client.shutdown()
    }
}

/// The parts of a sale's ledger a rebuild restores.
struct LedgerState: Equatable {
    var meta: [String: String]
    var sold: Int
    var pool: Int
    var users: [String: String]
    var orders: [String: OrderRecord]
    var idempotency: [String: String]
    var pastOrders: [String]
    var summary: String?

    init(server: RedisServer, saleID: String) throws {
        let connection = try server.connect()
        let keys = LedgerKeys(saleID: saleID)
        func hash(_ key: String) throws -> [String: String] { Ledger.pairs(try connection.send("HGETALL", key).array ?? []) }
        meta = try hash(keys.meta)
        sold = Int(try connection.send("GET", keys.sold).integer ?? -1)
        pool = Int(try connection.send("GET", keys.pool).integer ?? -1)
        users = try hash(keys.users)
        orders = try hash(keys.orders).mapValues { try OrderRecord(ledgerJSON: Array($0.utf8)) }
        idempotency = try hash(keys.idempotency)
        pastOrders = (try connection.send("ZRANGE", keys.customers, "0", "-1").array ?? []).compactMap(\.string)
        summary = try connection.send("GET", keys.summary).string
    }
}
