import Foundation
@testable import Replication
import ReservationEngine
import Synchronization
import Testing
import TestSupport

@Suite("Redis Sentinel failover and replica acknowledgements", .serialized)
struct SentinelTests {
    /// A primary, a replica that has caught up, three Sentinels that know both.
    struct Topology {
        let primary: RedisServer
        let replica: RedisServer
        let sentinels: [RedisSentinel]

        /// Waits without blocking a cooperative thread (other suites run alongside with 1 s leases).
        init() async throws {
            let primary = try RedisServer()
            let replica = try RedisServer(extraArguments: ["--replicaof", "127.0.0.1", String(primary.port)])
            let sentinels = try (0..<3).map { _ in try RedisSentinel(monitoring: primary) }
            self.primary = primary
            self.replica = replica
            self.sentinels = sentinels
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                let linked = (try? replica.connect().send("INFO", "replication").string)?.contains("master_link_status:up") == true
                let known = sentinels.allSatisfy { sentinel in
                    let configuration = RedisConfiguration(host: "127.0.0.1", port: sentinel.port)
                    return ((try? RedisConnection(configuration: configuration).send("SENTINEL", "replicas", "flashsale"))?.array?.count ?? 0) == 1
                }
                if linked && known { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw RedisServerError("the replica or the Sentinels did not come up within 15 s")
        }

        var configuration: RedisConfiguration {
            var configuration = primary.configuration
            configuration.host = "127.0.0.1"
            configuration.port = 1  // never used: the Sentinels name the primary
            configuration.sentinels = sentinels.map(\.endpoint)
            return configuration
        }
    }

    @Test func theConnectionFollowsAFailover() async throws {
        let topology = try await Topology()
        let connection = try RedisConnection(configuration: topology.configuration)
        #expect(connection.endpoint.port == topology.primary.port)
        #expect(try connection.send("SET", "before", "1") == .status("OK"))
        _ = try connection.send("WAIT", "1", "2000")

        try topology.sentinels[0].forceFailover()
        let deadline = ContinuousClock.now + .seconds(20)
        var written = false
        while ContinuousClock.now < deadline, !written {
            // Bounded: each attempt either fails fast (READONLY, a closed socket, no primary yet) or writes.
            if let reply = try? connection.send("SET", "after", "2"), reply == .status("OK") {
                written = connection.endpoint.port == topology.replica.port
            }
            if !written { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(written, "the connection reached the promoted replica and wrote to it")
        #expect(topology.sentinels.allSatisfy { $0.primaryPort() == topology.replica.port })
        #expect(try connection.send("GET", "before") == .bulk(Array("1".utf8)), "the write before the failover survived")
        #expect(try connection.send("ROLE").array?.first?.string == "master")
    }

    @Test func commitsWaitForTheReplica() async throws {
        let topology = try await Topology()
        var configuration = topology.configuration
        configuration.replicaAcks = 1
        configuration.replicaAckTimeoutMilliseconds = 300
        let sale = try LedgerFixture.createOpenSale(on: topology.primary, stock: 10, limit: 2)
        let engine = LedgerFixture.engine(on: topology.primary, instanceID: "acks", redis: configuration)

        guard case .confirmed = await engine.reserve(saleID: sale.id, customerID: "c1", quantity: 1, idempotencyKey: "k1", delivery: "d") else {
            Issue.record("with the replica up the order is confirmed"); return
        }
        topology.replica.pause()
        let stalled = await engine.reserve(saleID: sale.id, customerID: "c2", quantity: 1, idempotencyKey: "k2", delivery: "d")
        guard case .rejected(let error, _) = stalled, error.code == .retryLater else {
            Issue.record("an order the replica did not acknowledge must not be confirmed: \(stalled)"); return
        }
        topology.replica.resume()
        // The order was written; the retry with the same key returns it once the replica has it.
        var confirmed: OrderRecord?
        for _ in 0..<20 where confirmed == nil {
            if case .confirmed(let record) = await engine.reserve(saleID: sale.id, customerID: "c2", quantity: 1, idempotencyKey: "k2", delivery: "d") {
                confirmed = record
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(confirmed != nil)
        let orders = try LedgerFixture.orders(on: topology.primary, saleID: sale.id).filter { $0.customerID == "c2" }
        #expect(orders.count == 1, "one order for the key, never two")
        await engine.shutdown()
    }

    /// A planned hand-over as the Redis pods' preStop makes it: the Sentinels promote the replica, the old
    /// primary turns itself into the new one's replica. The engine's connection still points at the old one:
    /// its commit is refused there (`READONLY`, nothing applied) and must go to the new primary, so the
    /// customer is confirmed instead of told to retry.
    @Test func aCommitRefusedByTheDemotedPrimaryGoesToTheNewOne() async throws {
        let topology = try await Topology()
        let sale = try LedgerFixture.createOpenSale(on: topology.primary, stock: 10, limit: 2)
        let engine = LedgerFixture.engine(on: topology.primary, instanceID: "handover", leaseTTLMilliseconds: 60_000,
                                          redis: topology.configuration)
        guard case .confirmed = await engine.reserve(saleID: sale.id, customerID: "c1", quantity: 1, idempotencyKey: "k1", delivery: "d") else {
            Issue.record("before the hand-over the order is confirmed"); return
        }
        _ = try topology.primary.connect().send("WAIT", "1", "2000")
        try topology.sentinels[0].forceFailover()
        let named = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < named, !topology.sentinels.allSatisfy({ $0.primaryPort() == topology.replica.port }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(topology.sentinels.allSatisfy { $0.primaryPort() == topology.replica.port }, "the Sentinels name the replica")
        _ = try topology.primary.connect().send("REPLICAOF", "127.0.0.1", String(topology.replica.port))
        #expect(try topology.primary.connect().send("ROLE").array?.first?.string == "slave")

        let answer = await engine.reserve(saleID: sale.id, customerID: "c2", quantity: 1, idempotencyKey: "k2", delivery: "d")
        guard case .confirmed(let order) = answer else {
            Issue.record("the commit goes to the new primary: \(answer)"); return
        }
        let onNewPrimary = try LedgerFixture.orders(on: topology.replica, saleID: sale.id).map(\.orderID)
        #expect(onNewPrimary.contains(order.orderID), "the order is in the new primary's ledger")
        await engine.shutdown()
    }

    // With replica acks, a cancellation is answered only once the replica has it (a retryable 503 while it
    // lags; repeating the cancel then returns it), and a customer served from the waitlist is announced
    // only once the replica holds the order.
    @Test func cancellationsAndServedWaitersWaitForTheReplica() async throws {
        let topology = try await Topology()
        var configuration = topology.configuration
        configuration.replicaAcks = 1
        configuration.replicaAckTimeoutMilliseconds = 300
        let sale = try LedgerFixture.createOpenSale(on: topology.primary, stock: 2, limit: 1)
        let engine = LedgerFixture.engine(on: topology.primary, instanceID: "acks", leaseTTLMilliseconds: 60_000, maxShardUnits: 1, redis: configuration)
        let announced = Mutex<[String]>([])
        engine.onWaitersServed { _, served in announced.withLock { $0.append(contentsOf: served.map(\.customerID)) } }
        guard case .confirmed(let order) = await engine.reserve(saleID: sale.id, customerID: "c1", quantity: 1, idempotencyKey: "k1", delivery: "d") else {
            Issue.record("with the replica up the order is confirmed"); return
        }
        // Another instance holds the last unit, so a second customer waits; the reconciler's first look
        // positions the served-waiters cursor.
        let holder = try Ledger(connection: topology.primary.connect()).acquireLease(
            saleID: sale.id, owner: "holder", shardID: "holder#1", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 10), ttlMilliseconds: 60_000)
        guard case .granted = holder else { Issue.record("the holder leases the last unit: \(holder)"); return }
        let waiting = await engine.reserve(saleID: sale.id, customerID: "c2", quantity: 1, idempotencyKey: "k2", delivery: "d")
        guard case .waitlisted = waiting else { Issue.record("the second customer waits: \(waiting)"); return }
        await engine.reconcileAll()

        topology.replica.pause()
        do {
            _ = try await engine.cancel(saleID: sale.id, orderID: order.orderID, customerID: "c1")
            Issue.record("a cancellation the replica did not acknowledge must not be answered")
        } catch {
            #expect(error.code == .retryLater)
        }
        // The cancellation served c2 from the waitlist; nobody is told while the replica lags.
        await engine.reconcileAll()
        #expect(announced.withLock { $0 }.isEmpty, "no announcement before the replica has the order")
        topology.replica.resume()
        var cancelled: OrderRecord?
        for _ in 0..<20 where cancelled == nil {
            cancelled = try? await engine.cancel(saleID: sale.id, orderID: order.orderID, customerID: "c1")
            if cancelled == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(cancelled?.status == .cancelled)
        for _ in 0..<20 where announced.withLock({ $0.isEmpty }) {
            await engine.reconcileAll()
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(announced.withLock { $0 } == ["c2"], "served and announced once the replica has it")
        await engine.shutdown()
    }
}
