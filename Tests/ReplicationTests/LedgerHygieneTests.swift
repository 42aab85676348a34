import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

/// Liveness and hygiene of the ledger: no stranded units, one order per key, bounded structures.
@Suite("Ledger liveness and hygiene", .serialized)
struct LedgerHygieneTests {
    // A commit whose request never reached Redis (a proxy swallows it) ends RETRY_LATER; the lease whose
    // units are then in doubt is returned, not renewed forever, so a customer waiting on another instance
    // gets the unit within a few lease TTLs.
    @Test func unknownCommitOutcomeReturnsTheLease() async throws {
        let server = try RedisServer()
        let proxy = try TCPProxy(targetPort: server.port)
        defer { proxy.stop() }
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 2, limit: 1)
        var throughProxy = server.configuration
        throughProxy.port = proxy.port
        throughProxy.commandTimeoutMilliseconds = 150
        let ttl = 1_500
        let instanceA = LedgerFixture.engine(on: server, instanceID: "A", leaseTTLMilliseconds: ttl, maxShardUnits: 100, spreadFactor: 1, redis: throughProxy)
        let instanceB = LedgerFixture.engine(on: server, instanceID: "B", leaseTTLMilliseconds: ttl, maxShardUnits: 100, spreadFactor: 1)

        let first = await instanceA.reserve(saleID: sale.id, customerID: "a-0", quantity: 1, idempotencyKey: nil, delivery: "{}")
        guard case .confirmed = first else {
            Issue.record("A's first order must be confirmed: \(first)"); return
        }
        let lease = try #require(try LedgerFixture.snapshot(on: server, saleID: sale.id).leases.first)
        #expect(lease.owner == "A" && lease.remaining == 1, "A holds the other unit in its lease")

        proxy.set(.swallow)
        let lost = await instanceA.reserve(saleID: sale.id, customerID: "a-1", quantity: 1, idempotencyKey: nil, delivery: "{}")
        proxy.set(.forward)
        guard case .rejected(let error, _) = lost else { Issue.record("a swallowed commit cannot be confirmed: \(lost)"); return }
        #expect(error.code == .retryLater)

        let waiting = await instanceB.reserve(saleID: sale.id, customerID: "b-0", quantity: 1, idempotencyKey: nil, delivery: "{}")
        guard case .waitlisted = waiting else { Issue.record("B's customer waits while A's lease holds the unit: \(waiting)"); return }

        let served = try await withReconcilers([instanceA, instanceB]) {
            try eventually(seconds: Double(3 * ttl) / 1_000) {
                try LedgerFixture.orders(on: server, saleID: sale.id).contains { $0.customerID == "b-0" }
            }
        }
        #expect(served, "the waiting customer is served within 3 lease TTLs")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds)
        #expect(snapshot.sold == 2 && snapshot.leases.isEmpty)
        let customers = try LedgerFixture.orders(on: server, saleID: sale.id).map(\.customerID).sorted()
        #expect(customers == ["a-0", "b-0"], "the swallowed order never reached the ledger")
        await instanceA.shutdown()
        await instanceB.shutdown()
    }

    // The same customer and Idempotency-Key, waitlisted on B and then retried on A, which has units: A
    // answers with B's waitlist position, and when the entry is served there is exactly one order.
    @Test func aWaitlistEntryClaimsItsKey() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 3, limit: 1)
        let instanceA = LedgerFixture.engine(on: server, instanceID: "A", leaseTTLMilliseconds: 5_000, maxShardUnits: 100, spreadFactor: 1)
        let instanceB = LedgerFixture.engine(on: server, instanceID: "B", leaseTTLMilliseconds: 5_000, maxShardUnits: 100, spreadFactor: 1)
        guard case .confirmed = await instanceA.reserve(saleID: sale.id, customerID: "x", quantity: 1, idempotencyKey: nil, delivery: "{}") else {
            Issue.record("A's first order must be confirmed"); return
        }
        let onB = await instanceB.reserve(saleID: sale.id, customerID: "c", quantity: 1, idempotencyKey: "key-1", delivery: "{}")
        guard case .waitlisted(let position) = onB else { Issue.record("B has no unit: the customer waits: \(onB)"); return }
        #expect(position == 1)
        let onA = await instanceA.reserve(saleID: sale.id, customerID: "c", quantity: 1, idempotencyKey: "key-1", delivery: "{}")
        #expect(onA == .waitlisted(position: 1), "the key names the waitlist entry: same answer, no second order")
        // A gives its lease back; the ledger serves the waitlist head from it.
        await instanceA.shutdown()
        let orders = try LedgerFixture.orders(on: server, saleID: sale.id).filter { $0.customerID == "c" }
        #expect(orders.count == 1 && orders.first?.idempotencyKey == "key-1" && orders.first?.source == "waitlist")
        let again = await instanceB.reserve(saleID: sale.id, customerID: "c", quantity: 1, idempotencyKey: "key-1", delivery: "{}")
        guard case .confirmed(let record) = again else { Issue.record("the served entry's key returns its order: \(again)"); return }
        #expect(record.orderID == orders.first?.orderID)
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
        await instanceB.shutdown()
    }

    // A waitlist entry left unserved at close frees its key: the attempt bought nothing.
    @Test func anUnservedEntryFreesItsKey() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 1, limit: 1)
        let ledger = Ledger(connection: try server.connect())
        guard case .granted = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 10), ttlMilliseconds: 60_000) else {
            Issue.record("lease expected"); return
        }
        let joined = try ledger.joinWaitlist(saleID: sale.id, owner: "b", customerID: "c", quantity: 1, orderID: "\(sale.id).o1", idempotencyKey: "k", delivery: "")
        #expect(joined == .waiting(position: 1))
        let idempotency = LedgerKeys(saleID: sale.id).idempotency
        #expect(try ledger.connection.send(RedisCommand("HLEN", idempotency)).integer == 1, "the entry claims its key")
        _ = try ledger.closeSale(saleID: sale.id, mode: "ended")
        #expect(try ledger.connection.send(RedisCommand("HLEN", idempotency)).integer == 0, "closing frees the unserved entry's key")
    }

    // One customer orders and cancels 300 times: each cancelled order costs one past-order index entry (no
    // list rewritten per order), the customer's `users` entry holds the live order alone, and "my orders"
    // stays bounded: the live order plus the newest cancelled ones.
    @Test func customerViewIsBounded() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 1_000, limit: 1)
        let engine = LedgerFixture.engine(on: server, instanceID: "A", leaseTTLMilliseconds: 10_000)
        var last: OrderRecord?
        for index in 0..<300 {
            guard case .confirmed(let record) = await engine.reserve(saleID: sale.id, customerID: "cycler", quantity: 1, idempotencyKey: "k\(index)", delivery: "{}") else {
                Issue.record("order \(index) must be confirmed"); return
            }
            last = record
            if index < 299 { _ = try await engine.cancel(saleID: sale.id, orderID: record.orderID, customerID: "cycler") }
        }
        let view = try await engine.customerView(saleID: sale.id, customerID: "cycler")
        #expect(view.orders.count == 1 + Ledger.customerViewPastOrders)
        #expect(view.orders.filter { $0.status == .confirmed }.map(\.orderID) == [last?.orderID].compactMap { $0 })
        #expect(view.orders.map(\.createdAtMilliseconds) == view.orders.map(\.createdAtMilliseconds).sorted(), "oldest first")
        let index = LedgerKeys(saleID: sale.id).customers
        let connection = try server.connect()
        #expect(try connection.send(RedisCommand("TYPE", index)).string == "zset")
        #expect(try connection.send(RedisCommand("ZCARD", index)).integer == 299, "one entry per cancelled order")
        let entry = try connection.send(RedisCommand("HGET", LedgerKeys(saleID: sale.id).users, "cycler")).string
        #expect(entry == "1 " + (last?.orderID ?? "-") + "\nk299\r" + (last?.orderID ?? "-"), "units, then the one order holding them and its key's claim")
        #expect(try connection.send(RedisCommand("HLEN", LedgerKeys(saleID: sale.id).idempotency)).integer == 299, "the cancelled orders' keys stay claimed, in idem")
        // Look-alike customers are different customers: ids are bytes.
        let other = try await engine.customerView(saleID: sale.id, customerID: "cycler|a|")
        #expect(other.orders.isEmpty)
        await engine.shutdown()
    }

    // The registries are written before the sale: when that write fails, the retry creates the sale (it
    // used to answer SALE_EXISTS for a sale no registry knew, so it was never reconciled or drained).
    @Test func createSaleRetriesAfterARegistryFailure() throws {
        let server = try RedisServer()
        let admin = try server.connect()
        try admin.send(RedisCommand("ACL", "SETUSER", "app", "on", ">app-password", "~*", "&*", "+@all", "-sadd")).throwingServerError()
        var restricted = server.configuration
        restricted.username = "app"
        restricted.password = "app-password"
        let ledger = Ledger(connection: try RedisConnection(configuration: restricted))
        let now = LedgerFixture.nowMilliseconds
        let sale = SaleDefinition(id: "registry-retry", name: "Retry", stock: 5, startsAtMilliseconds: now, endsAtMilliseconds: now + 60_000)
        #expect(throws: RedisError.self) { try ledger.createSale(sale) }
        try admin.send(RedisCommand("ACL", "SETUSER", "app", "+sadd")).throwingServerError()
        #expect(try ledger.createSale(sale), "the retry creates the sale")
        #expect(try admin.send(RedisCommand("SISMEMBER", LedgerKeys.activeSales, sale.id)).integer == 1)
        #expect(try admin.send(RedisCommand("ZSCORE", LedgerKeys.allSales, sale.id)).string != nil)
        #expect(try ledger.createSale(sale) == false, "and only once")
    }

    // An order MongoDB refuses after the sale sold out gives its units back to a closed sale: the sale no
    // longer claims to be sold out, and its final summary is computed again.
    @Test func aFailedOrderAfterSellOutEndsTheSoldOutClaim() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 2, limit: 1)
        let ledger = Ledger(connection: try server.connect())
        guard case .granted(let fence, _, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 10), ttlMilliseconds: 60_000) else {
            Issue.record("lease expected"); return
        }
        let commits = (0..<2).map { PendingCommit(orderID: "\(sale.id).o\($0)", shardID: "a#1", fence: fence, customerID: "c\($0)", quantity: 1, idempotencyKey: "", delivery: "") }
        let outcomes = try ledger.commit(saleID: sale.id, owner: "a", commits)
        #expect(outcomes.allSatisfy { if case .committed = $0 { true } else { false } })
        let closed = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(closed.status == .closed && closed.closedReason == .soldOut)
        #expect(try ledger.summary(saleID: sale.id)?.sold == 2, "the final summary is stored")

        let failed = try ledger.failOrder(saleID: sale.id, orderID: "\(sale.id).o0", reason: "refused by the order store")
        guard case .failed = failed else { Issue.record("the order is failed: \(failed)"); return }
        let after = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(after.invariantHolds && after.sold == 1 && after.pool == 1)
        #expect(after.status == .closed && after.closedReason == .ended, "one unit is unsold: the sale is no longer sold out")
        let summary = try #require(try ledger.summary(saleID: sale.id))
        #expect(summary.final && summary.sold == 1, "the summary is computed again")
    }

    // The durability check reads the server's persistence settings: durable with AOF always, not durable
    // with everysec or without AOF, unknown (never an error) where CONFIG is refused.
    @Test func durabilityIsReported() throws {
        let server = try RedisServer()
        let admin = try server.connect()
        #expect(Ledger(connection: admin).durability() == .durable)
        try admin.send(RedisCommand("CONFIG", "SET", "appendfsync", "everysec")).throwingServerError()
        #expect(Ledger(connection: admin).durability() == .notDurable("appendfsync everysec"))
        try admin.send(RedisCommand("CONFIG", "SET", "appendonly", "no")).throwingServerError()
        #expect(Ledger(connection: admin).durability() == .notDurable("appendonly no"))
        try admin.send(RedisCommand("ACL", "SETUSER", "managed", "on", ">managed-password", "~*", "&*", "+@all", "-config")).throwingServerError()
        var managed = server.configuration
        managed.username = "managed"
        managed.password = "managed-password"
        let refused = Ledger(connection: try RedisConnection(configuration: managed)).durability()
        guard case .unknown(let reason) = refused else { Issue.record("a refused CONFIG GET is unknown: \(refused)"); return }
        #expect(reason.contains("NOPERM"))
        #expect(refused.gaugeValue == -1 && LedgerDurability.durable.gaugeValue == 1)
    }
}
