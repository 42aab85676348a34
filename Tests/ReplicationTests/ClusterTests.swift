import Foundation
import Logging
import ReservationEngine
import Testing
import TestSupport
@testable import Replication

/// The ledger on Redis Cluster: a local cluster of real `redis-server`s (3 masters), the service's own
/// connection routing each sale to the master that owns its slot.
@Suite("Redis Cluster: slots, routing, redirections, registries", .serialized)
struct ClusterTests {
    // The specification's examples: CRC16 of the key (12182 for "foo", 0x31C3 for "123456789"), and of the hash
    // tag when there is a non-empty one.
    @Test func slotsFollowTheSpecification() {
        #expect(ClusterSlots.slot(of: "foo") == 12_182)
        #expect(ClusterSlots.slot(of: "123456789") == 0x31C3)
        #expect(ClusterSlots.slot(of: "{user1000}.following") == ClusterSlots.slot(of: "{user1000}.followers"))
        #expect(ClusterSlots.slot(of: "foo{}{bar}") != ClusterSlots.slot(of: "bar"), "an empty tag hashes the whole key")
        #expect(ClusterSlots.slot(of: "foo{{bar}}zap") == ClusterSlots.slot(of: "{bar"))
        let keys = LedgerKeys(saleID: "phones")
        #expect(Set((keys.retained + [keys.channel]).map(ClusterSlots.slot(of:))).count == 1, "a sale lives in one slot")
        #expect(Set(LedgerKeys.registries.map(ClusterSlots.slot(of:))).count == 1, "the registries share a slot")
        #expect(ClusterSlots.routingSlot(of: RedisCommand("EVALSHA", "abc", "2", keys.meta, keys.pool)) == ClusterSlots.slot(of: keys.meta))
        #expect(ClusterSlots.routingSlot(of: RedisCommand("XREADGROUP", "GROUP", "g", "c", "COUNT", "5", "STREAMS", keys.outbox, ">"))
                == ClusterSlots.slot(of: keys.outbox))
        #expect(ClusterSlots.routingSlot(of: RedisCommand("WAIT", "1", "100")) == nil)
        #expect(ClusterSlots.routingSlot(of: RedisCommand("EVALSHA", "abc", "0")) == nil)
        #expect(ClusterRouter.redirection("MOVED 3999 127.0.0.1:6381") == .moved(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRouter.redirection("ASK 3999 127.0.0.1:6381") == .ask(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRouter.redirection("TRYAGAIN Multiple keys request during rehashing of slot") == .tryAgain)
        #expect(ClusterRouter.redirection("ERR unknown command") == nil)
    }

    /// Sale ids whose slots fall on each of the cluster's masters (one per master).
    static func salesOnEveryMaster(_ cluster: RedisCluster) throws -> [String] {
        var ids: [String] = []
        var masters: Set<Int> = []
        for index in 0..<1_000 where masters.count < cluster.masters.count {
            let id = "cluster-sale-\(index)"
            let owner = try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys(saleID: id).meta))
            if masters.insert(owner.port).inserted { ids.append(id) }
        }
        try #require(ids.count == cluster.masters.count)
        return ids
    }

    /// Creates the sale (50 units) and leases 10 of them to owner "a" as shard "a#1"; answers the lease's fence.
    static func openWithALease(_ ledger: Ledger, _ id: String) throws -> Int64 {
        #expect(try ledger.createSale(definition(id, stock: 50)))
        let sizing = ShardSizing(spreadFactor: 1, maxShardUnits: 10)
        guard case .granted(let fence, let units, _, _) = try ledger.acquireLease(saleID: id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 60_000) else {
            throw RedisServerError("no lease granted for \(id)")
        }
        #expect(units == 10)
        return fence
    }

    static func definition(_ id: String, stock: Int = 20) -> SaleDefinition {
        let now = LedgerFixture.nowMilliseconds
        return SaleDefinition(id: id, name: "Cluster sale", stock: stock, startsAtMilliseconds: now - 1_000, endsAtMilliseconds: now + 3_600_000, perCustomerLimit: 2)
    }

    // Sales on three masters: each is created, leased, committed and read through one connection given only the
    // seeds; its keys are on the master that owns its slot and nowhere else; the scripts are loaded on every
    // master; the registries list every sale (one slot of their own); a commit's WAIT goes to the sale's master.
    @Test func eachSaleRunsOnTheMasterThatOwnsItsSlot() throws {
        let cluster = try RedisCluster(masters: 3)
        let connection = try cluster.connect()
        let ledger = Ledger(connection: connection)
        try ledger.loadScripts()
        #expect(Set(connection.clusterMasters.map(\.port)) == Set(cluster.masters.map(\.port)))
        for master in cluster.masters {
            let loaded = try master.connect().send(RedisCommand(["SCRIPT", "EXISTS"] + LedgerScripts.all.map(\.digest))).array ?? []
            #expect(loaded.count == LedgerScripts.all.count && loaded.allSatisfy { $0.integer == 1 }, "scripts on \(master.port)")
        }
        let ids = try Self.salesOnEveryMaster(cluster)
        let sizing = ShardSizing(spreadFactor: 1, maxShardUnits: 5)
        for id in ids {
            #expect(try ledger.createSale(Self.definition(id)))
            guard case .granted(let fence, let units, _, _) = try ledger.acquireLease(saleID: id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 60_000) else {
                Issue.record("a grant for \(id)"); continue
            }
            #expect(units == 5)
            let commit = PendingCommit(orderID: "\(id).o1", shardID: "a#1", fence: fence, customerID: "c1", quantity: 2, idempotencyKey: "k1", delivery: "{}")
            guard case .committed = try ledger.commit(saleID: id, owner: "a", [commit]).first else {
                Issue.record("commit on \(id)"); continue
            }
            let owner = try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys(saleID: id).meta))
            #expect(connection.endpoint.port == owner.port, "the last command went to the sale's master")
            for master in cluster.masters {
                let count = try master.connect().send(RedisCommand("CLUSTER", "COUNTKEYSINSLOT", String(ClusterSlots.slot(of: LedgerKeys(saleID: id).meta)))).integer
                #expect((count ?? 0 > 0) == (master.port == owner.port), "keys of \(id) on \(master.port)")
            }
            let snapshot = try #require(try ledger.snapshot(saleID: id))
            #expect(snapshot.sold == 2 && snapshot.pool == 15)
            #expect(try ledger.order(saleID: id, orderID: "\(id).o1")?.quantity == 2)
        }
        let listed = try ledger.salePage(after: nil, count: 100).map(\.id)
        #expect(Set(listed) == Set(ids))
        #expect(try ledger.migrateRegistries() == 0, "nothing to migrate on a cluster")
    }

    // A reshard: the slot of a live sale moves to another master while a connection holds the old map. Halfway
    // (some keys moved), a script naming all of the sale's keys gets TRYAGAIN and, past the bound, fails as
    // REDIS_CLUSTER_UNAVAILABLE with nothing applied; a read of a key already moved follows ASK. Afterwards the
    // stale connection follows MOVED, reads the map again, and the sale goes on where it was.
    @Test func aSaleFollowsItsSlotThroughAReshard() throws {
        let cluster = try RedisCluster(masters: 3)
        let connection = try cluster.connect()
        let ledger = Ledger(connection: connection)
        let id = try Self.salesOnEveryMaster(cluster)[0]
        let fence = try Self.openWithALease(ledger, id)
        let slot = ClusterSlots.slot(of: LedgerKeys(saleID: id).meta)
        let source = try cluster.owner(of: slot)
        let target = try #require(cluster.masters.first { $0.port != source.port })
        let router = try #require(connection.cluster)
        let readsBefore = router.mapReads

        try cluster.migrate(slot: slot, to: target, keysPerBatch: 1) {
            let halfway = PendingCommit(orderID: "\(id).half", shardID: "a#1", fence: fence, customerID: "c0", quantity: 1, idempotencyKey: "", delivery: "{}")
            let started = ContinuousClock.now
            #expect {
                _ = try ledger.commit(saleID: id, owner: "a", [halfway])
            } throws: { ($0 as? RedisError)?.code == .clusterUnavailable }
            #expect(started.duration(to: .now) >= .milliseconds(ClusterRouter.tryAgainBudgetMilliseconds), "TRYAGAIN retried for its whole budget")
            // The first key moved answers on the target after ASKING.
            let moved = try target.connect().send(RedisCommand("CLUSTER", "GETKEYSINSLOT", String(slot), "10")).array?.first?.string
            let key = try #require(moved)
            #expect(try connection.send(RedisCommand("TYPE", key)).string != "none", "\(key) read through ASK")
        }
        let commit = PendingCommit(orderID: "\(id).after", shardID: "a#1", fence: fence, customerID: "c1", quantity: 2, idempotencyKey: "", delivery: "{}")
        guard case .committed = try ledger.commit(saleID: id, owner: "a", [commit]).first else {
            Issue.record("the commit after the reshard"); return
        }
        #expect(connection.endpoint.port == target.port)
        #expect(router.mapReads == readsBefore, "MOVED alone: the retry went to the new owner straight away")
        let snapshot = try #require(try ledger.snapshot(saleID: id))
        #expect(router.mapReads == readsBefore + 1, "the command after a MOVED reads the map again first")
        #expect(snapshot.sold == 2, "the half-way commit applied nothing")
        #expect(snapshot.pool + snapshot.leases.reduce(0) { $0 + $1.remaining } + snapshot.sold == 50)
        #expect(try ledger.orders(saleID: id).map(\.orderID) == ["\(id).after"])
    }

    // The engine on the cluster: orders of sales on every master, through leases and group commits (one committer
    // per master), with the reconciler renewing; the ledger adds up on each.
    @Test func theEngineSellsSalesOnEveryMaster() async throws {
        let cluster = try RedisCluster(masters: 3)
        let ledger = Ledger(connection: try cluster.connect())
        let ids = try Self.salesOnEveryMaster(cluster)
        for id in ids { #expect(try ledger.createSale(Self.definition(id, stock: 30))) }
        let dummy = cluster.masters[0]
        let engine = LedgerFixture.engine(on: dummy, instanceID: "A", redis: cluster.configuration)
        #expect(engine.committer.count == 3, "one group committer per master")
        #expect(Set(ids.map { ObjectIdentifier(engine.committer.lane(of: $0)) }).count == 3, "sales on three masters, three lanes")
        let confirmed = await withReconcilers([engine]) {
            var confirmed = 0
            for id in ids {
                for customer in 0..<10 {
                    if case .confirmed = await engine.reserve(saleID: id, customerID: "c\(customer)", quantity: 1, idempotencyKey: "k\(customer)", delivery: "{}") {
                        confirmed += 1
                    }
                }
            }
            return confirmed
        }
        await engine.shutdown()
        #expect(confirmed == 30)
        for id in ids {
            let snapshot = try #require(try ledger.snapshot(saleID: id))
            #expect(snapshot.sold == 10)
            #expect(snapshot.pool + snapshot.leases.reduce(0) { $0 + $1.remaining } + snapshot.sold == 30)
        }
    }

    // A master dies mid-sale: its replica is promoted (cluster-node-timeout 1 s). Meanwhile the sale's commits fail
    // (connection refused, then the slot has no master); once the map names the promoted replica they go there.
    // Every order confirmed before the kill is on the new master, and the ledger adds up.
    @Test func aSaleFollowsItsMasterThroughAFailover() throws {
        let cluster = try RedisCluster(masters: 3, replicasPerMaster: 1)
        var configuration = cluster.configuration
        configuration.replicaAcks = 1
        let connection = try RedisConnection(configuration: configuration)
        let ledger = Ledger(connection: connection)
        let id = try Self.salesOnEveryMaster(cluster)[1]
        let fence = try Self.openWithALease(ledger, id)
        func order(_ name: String) -> PendingCommit {
            PendingCommit(orderID: "\(id).\(name)", shardID: "a#1", fence: fence, customerID: "c-\(name)", quantity: 1, idempotencyKey: "", delivery: "{}")
        }
        guard case .committed = try ledger.commit(saleID: id, owner: "a", [order("before")]).first else {
            Issue.record("the commit before the kill"); return
        }
        try ledger.requireReplicas()
        let slot = ClusterSlots.slot(of: LedgerKeys(saleID: id).meta)
        let dead = try cluster.owner(of: slot)
        dead.kill()
        var refused = 0
        var committed = false
        let started = ContinuousClock.now
        while !committed && started.duration(to: .now) < .seconds(30) {
            do {
                // A duplicate: an earlier attempt applied before its answer was lost (outcome unknown, retried).
                switch try ledger.commit(saleID: id, owner: "a", [order("after")]).first {
                case .committed, .duplicate: committed = true
                default: break
                }
            } catch {
                #expect([.connectionFailed, .connectionLost, .timeout, .clusterUnavailable].contains(error.code), "\(error)")
                refused += 1
                usleep(100_000)
            }
        }
        #expect(committed, "the sale's commits reach the promoted replica")
        #expect(refused > 0, "the commits failed while the slot had no master")
        let promoted = try cluster.owner(of: slot)
        #expect(promoted.port != dead.port && cluster.replicas.contains { $0.port == promoted.port })
        #expect(connection.endpoint.port == promoted.port)
        let snapshot = try #require(try ledger.snapshot(saleID: id))
        #expect(Set(try ledger.orders(saleID: id).map(\.orderID)) == ["\(id).before", "\(id).after"])
        #expect(snapshot.sold == 2 && snapshot.pool + snapshot.leases.reduce(0) { $0 + $1.remaining } + snapshot.sold == 50)
    }

    // A master stalls (SIGSTOP: what a long fsync, a hung host or a partition shorter than the cluster's node
    // timeout look like to a client: connections open, commands time out) while sales on the other masters sell.
    // The renewals and reads of those sales go on in their own control lanes, beside the stalled one: none of
    // their leases passes its local deadline, their orders and stock reads stay fast. After the master resumes,
    // its own sale sells again.
    @Test func aStalledMasterHoldsUpOnlyItsOwnSales() async throws {
        let cluster = try RedisCluster(masters: 3, nodeTimeoutMilliseconds: 60_000)
        let ledger = Ledger(connection: try cluster.connect())
        let ids = try Self.salesOnEveryMaster(cluster)
        for id in ids { #expect(try ledger.createSale(Self.definition(id, stock: 1_000))) }
        let stalledID = ids[0]
        let stalled = try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys(saleID: stalledID).meta))
        let healthy = Array(ids.dropFirst())
        let engine = LedgerFixture.engine(on: cluster.masters[0], instanceID: "A", leaseTTLMilliseconds: 2_000, redis: cluster.configuration)
        let (confirmed, attempts, slowest) = await withReconcilers([engine]) {
            for id in healthy {
                if case .confirmed = await engine.reserve(saleID: id, customerID: "warm", quantity: 1, idempotencyKey: nil, delivery: "{}") {} else {
                    Issue.record("the first order of \(id)")
                }
            }
            // a few ticks: the reconciler tracks every active sale, the stalled one too (its renew tick reaches its master)
            try? await Task.sleep(for: .milliseconds(300))
            stalled.pause()
            var confirmed = 0
            var attempts = 0
            var slowest = Duration.zero
            let until = ContinuousClock.now + .seconds(4)
            while ContinuousClock.now < until {
                for id in healthy {
                    let started = ContinuousClock.now
                    if case .confirmed = await engine.reserve(saleID: id, customerID: "c\(attempts)", quantity: 1, idempotencyKey: nil, delivery: "{}") {
                        confirmed += 1
                    }
                    // the sale's stock as its pages see it: refreshed through its control lane
                    _ = try? await engine.stock(saleID: id)
                    slowest = max(slowest, started.duration(to: .now))
                    attempts += 1
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            stalled.resume()
            return (confirmed, attempts, slowest)
        }
        #expect(attempts > 20 && confirmed == attempts, "every order on the other masters confirmed (\(confirmed) of \(attempts))")
        #expect(slowest < .seconds(1), "the slowest order and stock read on the other masters took \(slowest)")
        #expect(engine.leasesLapsed == 0, "\(engine.leasesLapsed) leases of sales on the other masters passed their local deadline")
        let after = await withReconcilers([engine]) {
            await engine.reserve(saleID: stalledID, customerID: "after", quantity: 1, idempotencyKey: nil, delivery: "{}")
        }
        await engine.shutdown()
        guard case .confirmed = after else { Issue.record("the stalled master's sale after it resumed: \(after)"); return }
        for id in healthy {
            let snapshot = try #require(try ledger.snapshot(saleID: id))
            #expect(snapshot.pool + snapshot.leases.reduce(0) { $0 + $1.remaining } + snapshot.sold == 1_000)
        }
    }

    // The outbox drainer on Redis Cluster: a master that stalls fails the drain of its own sale, and the sales on the
    // other masters reach MongoDB in the same pass (the sales drain latest start first, the stalled one first); once
    // the master answers again its sale drains too. Nothing is lost: every confirmed order ends in MongoDB.
    @Test func aStalledMasterHoldsUpOnlyItsOwnSalesDrain() async throws {
        let cluster = try RedisCluster(masters: 3, nodeTimeoutMilliseconds: 60_000)
        let ledger = Ledger(connection: try cluster.connect())
        let registries = try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys.activeSales))
        var ids = try Self.salesOnEveryMaster(cluster)
        // the stalled sale: on a master without the registries (which every pass reads first)
        let stalledIndex = try #require(try ids.firstIndex { try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys(saleID: $0).meta)).port != registries.port })
        ids.swapAt(0, stalledIndex)
        let now = LedgerFixture.nowMilliseconds
        for (index, id) in ids.enumerated() {
            #expect(try ledger.createSale(SaleDefinition(id: id, name: "Cluster sale", stock: 20, startsAtMilliseconds: now - 1_000 - Int64(index) * 100,
                                                        endsAtMilliseconds: now + 3_600_000, perCustomerLimit: 2)))
        }
        let engine = LedgerFixture.engine(on: cluster.masters[0], instanceID: "A", redis: cluster.configuration)
        for id in ids {
            for customer in ["c1", "c2"] {
                guard case .confirmed = await engine.reserve(saleID: id, customerID: customer, quantity: 1, idempotencyKey: nil, delivery: "sealed-\(customer)") else {
                    Issue.record("an order of \(id)"); continue
                }
            }
        }
        await engine.shutdown()

        let mongoServer = try MongoWireServer()
        defer { mongoServer.stop() }
        let mongo = try MongoClient(uri: mongoServer.uri, threads: 1)
        let client = RedisClient(configuration: cluster.configuration, name: "test-outbox")
        var logger = Logger(label: "test.outbox")
        logger.logLevel = .critical
        let drainer = OutboxDrainer(redis: client, mongo: mongo, configuration: .init(consumer: "test-drainer"), logger: logger)
        defer {
            mongo.shutdown()
            client.shutdown()
        }
        let stalled = try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys(saleID: ids[0]).meta))
        stalled.pause()
        let pass: OutboxDrainer.Pass
        do {
            pass = try await drainer.drainOnce()
        } catch {
            stalled.resume()
            Issue.record("the pass failed as a whole: \(error)")
            return
        }
        stalled.resume()
        #expect(pass.orders == 4 && pass.failedSales == 1, "the other masters' sales drained: \(pass)")
        #expect(drainer.status.failingSales.keys.sorted() == [ids[0]])
        func drainedOrders() throws -> Set<String> { Set(try mongoServer.documents("orders").compactMap { $0["saleId"] as? String }) }
        #expect(try drainedOrders() == Set(ids.dropFirst()))
        for _ in 0..<20 where try drainedOrders().count < ids.count {
            _ = try? await drainer.drainOnce()
        }
        #expect(try mongoServer.documents("orders").count == 2 * ids.count, "every confirmed order reached MongoDB")
        #expect(drainer.status.failingSales.isEmpty)
    }

    // The lanes follow the masters of the slot map read at start, not the seed list. The seeds here are every node,
    // replicas first, as the Kubernetes component lists every pod: the engine runs one commit lane and one control
    // lane per master, and each master's slots are on a lane of their own (a master that stalls holds up no other
    // master's sales). With no seed answering at start, the slots are split evenly over one lane per seed.
    @Test func lanesFollowTheMastersOfTheMap() async throws {
        let cluster = try RedisCluster(masters: 3, replicasPerMaster: 1)
        var configuration = cluster.configuration
        configuration.clusterNodes = (cluster.replicas + cluster.masters).map { RedisConfiguration.Endpoint(host: "127.0.0.1", port: $0.port) }
        let engine = LedgerFixture.engine(on: cluster.masters[0], instanceID: "A", redis: configuration)
        #expect(engine.committer.count == 3 && engine.control.count == 3, "one lane per master, not one per seed (\(engine.committer.count) lanes)")
        var ownerPort = [Int](repeating: 0, count: ClusterSlots.count)
        for range in try #require(try cluster.masters[0].connect().send("CLUSTER", "SLOTS").array) {
            let fields = try #require(range.array)
            let start = try #require(fields[0].integer), end = try #require(fields[1].integer)
            let port = try #require(fields[2].array?[1].integer)
            for slot in Int(start)...Int(end) { ownerPort[slot] = Int(port) }
        }
        #expect(!ownerPort.contains(0), "the map covers every slot")
        var lanesOfMaster: [Int: Set<Int>] = [:]
        for slot in 0..<ClusterSlots.count { lanesOfMaster[ownerPort[slot], default: []].insert(engine.committer.laneIndex(ofSlot: slot)) }
        #expect(lanesOfMaster.count == 3 && lanesOfMaster.values.allSatisfy { $0.count == 1 }, "each master's slots on one lane: \(lanesOfMaster)")
        #expect(Set(lanesOfMaster.values.flatMap { $0 }).count == 3, "three masters, three lanes: \(lanesOfMaster)")
        #expect(engine.control.layout == engine.committer.layout)
        await engine.shutdown()

        var unreachable = configuration
        unreachable.clusterNodes = try (0..<2).map { _ in RedisConfiguration.Endpoint(host: "127.0.0.1", port: try RedisServer.freeLoopbackPort()) }
        let fallback = LaneLayout.forLedger(unreachable, logger: Logger(label: "test.lanes"))
        #expect(fallback == LaneLayout.even(2))
        #expect(fallback.lane(ofSlot: 0) == 0 && fallback.lane(ofSlot: ClusterSlots.count - 1) == 1)
    }

    // A node that stalls is asked for the slot map last: after a command timed out on it, the next command for another
    // master reads the map from the other nodes at once, not after a second command timeout on the stalled one (which
    // the map lists first here).
    @Test func aStalledNodeIsAskedForTheMapLast() throws {
        let cluster = try RedisCluster(masters: 3, nodeTimeoutMilliseconds: 60_000)
        let connection = try cluster.connect()
        let router = try #require(connection.cluster)
        let first = try #require(router.knownMasters.first)
        let ids = try Self.salesOnEveryMaster(cluster)
        let stalledID = try #require(try ids.first { try cluster.owner(of: ClusterSlots.slot(of: LedgerKeys(saleID: $0).meta)).port == first.port })
        let otherID = try #require(ids.first { $0 != stalledID })
        let stalled = try #require(cluster.masters.first { $0.port == first.port })
        let readsBefore = router.mapReads
        stalled.pause()
        defer { stalled.resume() }
        #expect(throws: RedisError.self) { try connection.send(RedisCommand("EXISTS", LedgerKeys(saleID: stalledID).meta)).throwingServerError() }
        let started = ContinuousClock.now
        #expect(try connection.send(RedisCommand("EXISTS", LedgerKeys(saleID: otherID).meta)).throwingServerError().integer == 0)
        let took = started.duration(to: .now)
        #expect(took < .seconds(1), "the map was read from another node at once (took \(took); a command timeout is 2 s)")
        #expect(router.mapReads == readsBefore + 1)
    }

    // The ledger on Redis Cluster is durable only when every master is: each holds its sales' orders alone. A master
    // with appendfsync everysec makes it not durable, named; set back, durable again.
    @Test func durabilityIsEveryMastersDurability() throws {
        let cluster = try RedisCluster(masters: 3)
        let ledger = Ledger(connection: try cluster.connect())
        #expect(ledger.durability() == .durable)
        let weak = cluster.masters[2]
        try weak.connect().send("CONFIG", "SET", "appendfsync", "everysec").throwingServerError()
        let found = ledger.durability()
        guard case .notDurable(let reason) = found else { Issue.record("one master with appendfsync everysec: \(found)"); return }
        #expect(reason.contains(":\(weak.port)") && reason.contains("appendfsync everysec"), "\(reason)")
        try weak.connect().send("CONFIG", "SET", "appendfsync", "always").throwingServerError()
        #expect(ledger.durability() == .durable)
    }

    // A ledger written by an earlier version keeps its registries under the old names: readiness moves them over,
    // keeping an entry already in the new registry as it is.
    @Test func registriesUnderTheOldNamesAreMovedOver() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        try connection.send(RedisCommand("SADD", LedgerKeys.legacyRegistries[0], "old-a", "old-b")).throwingServerError()
        try connection.send(RedisCommand("ZADD", LedgerKeys.legacyRegistries[1], "100", "old-a", "200", "old-b", "300", "both")).throwingServerError()
        try connection.send(RedisCommand("ZADD", LedgerKeys.allSales, "999", "both")).throwingServerError()
        try connection.send(RedisCommand("ZADD", LedgerKeys.legacyRegistries[2], "5000", "old-r")).throwingServerError()
        let ledger = Ledger(connection: connection)
        try ledger.loadScripts()
        #expect(try connection.send(RedisCommand("SMEMBERS", LedgerKeys.activeSales)).array?.compactMap(\.string).sorted() == ["old-a", "old-b"])
        #expect(try connection.send(RedisCommand("ZRANGE", LedgerKeys.allSales, "0", "-1", "WITHSCORES")).array?.compactMap(\.string)
                == ["old-a", "100", "old-b", "200", "both", "999"])
        #expect(try connection.send(RedisCommand("ZSCORE", LedgerKeys.retiringSales, "old-r")).string == "5000")
        for legacy in LedgerKeys.legacyRegistries {
            #expect(try connection.send(RedisCommand("EXISTS", legacy)).integer == 0)
        }
        #expect(try ledger.migrateRegistries() == 0, "a second run finds nothing")
    }
}
