import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("Ledger scripts")
struct LedgerScriptTests {
    // A sale id is created once; the second create answers EXISTS and changes nothing.
    @Test func createSaleOnce() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 10)
        let ledger = Ledger(connection: try server.connect())
        var again = sale
        again.stock = 99
        #expect(try ledger.createSale(again) == false)
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).definition.stock == 10)
    }

    // A restarted instance naming a shard like a lease its earlier incarnation still holds supersedes it:
    // the old lease's units go back to the pool first (found by the chaos suite: they used to vanish).
    @Test func aReusedShardIDSupersedesTheOldLease() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100)
        let ledger = Ledger(connection: try server.connect())
        let sizing = ShardSizing(spreadFactor: 1, maxShardUnits: 10)
        guard case .granted(let oldFence, let oldUnits, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 60_000),
              case .granted(let newFence, let newUnits, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 60_000) else {
            Issue.record("both grants expected"); return
        }
        #expect(oldUnits == 10 && newUnits == 10 && newFence > oldFence)
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.leases.count == 1 && snapshot.leases.first?.fence == newFence)
        #expect(snapshot.pool + snapshot.leases.reduce(0) { $0 + $1.remaining } + snapshot.sold == 100)
        // The superseded holder's commit is fenced off.
        let late = PendingCommit(orderID: "\(sale.id).olate", shardID: "a#1", fence: oldFence, customerID: "c", quantity: 1, idempotencyKey: "", delivery: "")
        let outcomes = try ledger.commit(saleID: sale.id, owner: "a", [late])
        #expect(outcomes == [.fenced])
    }

    // A lease past its expiry that nothing reclaimed still holds its units: a late commit on it is made (the
    // planned failover's write pause outlasts a renewal's slack). Once a script reclaims it, the next late
    // commit is fenced off, and the units it held are in the pool.
    @Test func aLateCommitOnAnUnreclaimedLeaseIsMadeAndOnAReclaimedOneFenced() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100)
        let ledger = Ledger(connection: try server.connect())
        let sizing = ShardSizing(spreadFactor: 1, maxShardUnits: 10)
        guard case .granted(let fence, let units, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 50) else {
            Issue.record("a grant expected"); return
        }
        #expect(units == 10)
        usleep(150_000)  // past the lease's expiry in Redis time
        func late(_ name: String) -> PendingCommit {
            PendingCommit(orderID: "\(sale.id).\(name)", shardID: "a#1", fence: fence, customerID: "c-\(name)", quantity: 1, idempotencyKey: "", delivery: "")
        }
        guard case .committed = try ledger.commit(saleID: sale.id, owner: "a", [late("o1")]).first else {
            Issue.record("the unreclaimed lease's commit must be made"); return
        }
        // Another instance's grant settles the sale first: the expired lease goes back to the pool.
        guard case .granted = try ledger.acquireLease(saleID: sale.id, owner: "b", shardID: "b#1", sizing: sizing, ttlMilliseconds: 60_000) else {
            Issue.record("b's grant expected"); return
        }
        #expect(try ledger.commit(saleID: sale.id, owner: "a", [late("o2")]) == [.fenced])
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.sold == 1 && snapshot.leases.map(\.owner) == ["b"])
        #expect(snapshot.pool + snapshot.leases.reduce(0) { $0 + $1.remaining } + snapshot.sold == 100)
    }

    // Before its start a sale grants no lease and says when it starts; it opens by itself at the start.
    @Test func scheduledSaleOpensAtStart() throws {
        let server = try RedisServer()
        let ledger = Ledger(connection: try server.connect())
        let now = LedgerFixture.nowMilliseconds
        let sale = SaleDefinition(id: "later", name: "Later", stock: 5, startsAtMilliseconds: now + 400, endsAtMilliseconds: now + 60_000)
        #expect(try ledger.createSale(sale))
        let early = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(), ttlMilliseconds: 1_000)
        guard case .notStarted(let wait) = early else { Issue.record("expected notStarted, got \(early)"); return }
        #expect(wait > 0 && wait <= 400)
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).status == .scheduled)
        Thread.sleep(forTimeInterval: 0.45)
        let opened = try #require(try ledger.renewLeases(saleID: sale.id, owner: "a", leases: [], ttlMilliseconds: 1_000))
        #expect(opened.0.status == .open)
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).timestamps["openedAtMs"] != nil)
    }

    // A commit naming a lease with another fence, an unknown lease or too many units is FENCED; nothing changes.
    @Test func commitChecksTheFence() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 10)
        let ledger = Ledger(connection: try server.connect())
        guard case .granted(let fence, let units, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 4), ttlMilliseconds: 5_000) else {
            Issue.record("lease expected"); return
        }
        #expect(units == 4)
        func order(_ id: String, fence: Int64, shard: String = "a#1", quantity: Int = 1) -> PendingCommit {
            PendingCommit(orderID: id, shardID: shard, fence: fence, customerID: "c-\(id)", quantity: quantity, idempotencyKey: "", delivery: "{}")
        }
        let outcomes = try ledger.commit(saleID: sale.id, owner: "a", [
            order("1", fence: fence + 1), order("2", fence: fence, shard: "a#9"), order("3", fence: fence),
        ])
        #expect(outcomes[0] == .fenced && outcomes[1] == .fenced)
        guard case .committed = outcomes[2] else { Issue.record("order 3 commits: \(outcomes[2])"); return }
        #expect(try ledger.commit(saleID: sale.id, owner: "b", [order("4", fence: fence)]) == [.fenced], "another owner")
        // A replay of order 3 (unknown outcome retried) is recognised, not sold twice.
        guard case .duplicate(let record) = try ledger.commit(saleID: sale.id, owner: "a", [order("3", fence: fence)])[0] else {
            Issue.record("replay must be a duplicate"); return
        }
        #expect(record.orderID == "3")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.sold == 1 && snapshot.leases.first?.remaining == 3 && snapshot.invariantHolds)
    }

    // The group committer's first attempt at a batch skips the lookup of its order ids (they are new); the same
    // batch sent again as a replay looks them up and answers its orders as duplicates; and a reused id on a
    // first attempt, which the ids' construction rules out, still shows: the HSET's count is logged and counted.
    @Test func aReplayLooksItsOrderIDsUpAndAFirstAttemptDoesNot() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 10, limit: 5)
        let connection = try server.connect()
        let ledger = Ledger(connection: connection)
        guard case .granted(let fence, _, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 10), ttlMilliseconds: 5_000) else {
            Issue.record("lease expected"); return
        }
        let batch = ["r1", "r2"].map { PendingCommit(orderID: $0, shardID: "a#1", fence: fence, customerID: "c-\($0)", quantity: 1, idempotencyKey: "", delivery: "{}") }
        let first = try ledger.commit(saleID: sale.id, owner: "a", batch, replay: false)
        #expect(first.allSatisfy { if case .committed = $0 { true } else { false } }, "\(first)")
        let replayed = try ledger.commit(saleID: sale.id, owner: "a", batch, replay: true)
        let replayedIDs = replayed.map { outcome -> String? in if case .duplicate(let record) = outcome { record.orderID } else { nil } }
        #expect(replayedIDs == ["r1", "r2"], "\(replayed)")
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).sold == 2, "the replay sold nothing")
        let keys = LedgerKeys(saleID: sale.id)
        #expect(try connection.send("HGET", keys.stats, "reusedOrderIds").isNull)

        _ = try ledger.commit(saleID: sale.id, owner: "a", [batch[0]], replay: false)
        #expect(try connection.send("HGET", keys.stats, "reusedOrderIds").string == "1", "a reused id on a first attempt is counted")
    }

    // A lease is sized by the instances present in the sale (their renew ticks), not only by those holding a
    // lease: at the opening, the first instance to ask does not take the share of the others about to ask.
    @Test func leasesAreSizedByThePresentInstances() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 800)
        let ledger = Ledger(connection: try server.connect())
        let sizing = ShardSizing(spreadFactor: 1, maxShardUnits: 1_000)
        // b and c tick (no leases yet); a asks first and gets a third of the pool, not all of it.
        _ = try ledger.renewLeases(saleID: sale.id, owner: "b", leases: [], ttlMilliseconds: 2_000)
        _ = try ledger.renewLeases(saleID: sale.id, owner: "c", leases: [], ttlMilliseconds: 2_000)
        guard case .granted(_, let first, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 2_000) else {
            Issue.record("lease expected"); return
        }
        #expect(first == 800 / 3)
        // b asks next: the pool left over the same three instances.
        guard case .granted(_, let second, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "b", shardID: "b#1", sizing: sizing, ttlMilliseconds: 2_000) else {
            Issue.record("lease expected"); return
        }
        #expect(second == (800 - first) / 3)
        // An instance that stopped ticking longer ago than one lease TTL no longer counts.
        let other = try LedgerFixture.createOpenSale(on: server, stock: 90)
        let connection = try server.connect()
        _ = try connection.send("HSET", LedgerKeys(saleID: other.id).stats, "seen:gone", "1")
        guard case .granted(_, let alone, _, _) = try ledger.acquireLease(saleID: other.id, owner: "a", shardID: "a#1", sizing: sizing, ttlMilliseconds: 2_000) else {
            Issue.record("lease expected"); return
        }
        #expect(alone == 90)
        #expect(try connection.send("HEXISTS", LedgerKeys(saleID: other.id).stats, "seen:gone").integer == 0, "long gone: dropped")
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
    }

    // Across instances units follow arrival: an instance whose first waiting customer arrived after another
    // instance's uncovered head is answered WAIT; a lease covers exactly the customers who arrived up to the
    // other head (plus the tolerance); a prefetch waits while anyone elsewhere waits; a stale head is dropped.
    @Test func leasesFollowArrivalAcrossInstances() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100)
        let ledger = Ledger(connection: try server.connect())
        let connection = try server.connect()
        let stats = LedgerKeys(saleID: sale.id).stats
        let sizing = ShardSizing(spreadFactor: 1, maxShardUnits: 50)
        func lease(_ owner: String, _ points: [(Int64, Int)], demand: Int? = nil, tolerance: Int = 0) throws -> LeaseAcquisition {
            try ledger.acquireLease(saleID: sale.id, owner: owner, shardID: "\(owner)#\(UUID().uuidString.prefix(6))", sizing: sizing,
                                    ttlMilliseconds: 60_000, demandUnits: demand,
                                    arrivals: points.map { ArrivalPoint(arrivalMicroseconds: $0.0, cumulativeUnits: $0.1) },
                                    arrivalToleranceMicroseconds: tolerance)
        }
        func head(_ owner: String) throws -> Int64? {
            try connection.send("HGET", stats, "head:\(owner)").string.flatMap { Int64($0.split(separator: ":")[0]) }
        }
        // b alone: the share rule, capped by its demand; its second customer (9000) is left as its head.
        guard case .granted(_, 1, _, _) = try lease("b", [(5_000, 1), (9_000, 2)], demand: 1) else {
            Issue.record("b's lease of its demand expected"); return
        }
        #expect(try head("b") == 9_000)
        // a's first customer arrived after b's head: wait, and leave a's head for b to see.
        #expect(try lease("a", [(10_000, 1)]) == .wait(earliestArrivalMicroseconds: 9_000))
        #expect(try head("a") == 10_000)
        #expect(try lease("a", []) == .wait(earliestArrivalMicroseconds: 9_000), "no prefetch while b's customers wait")
        // a's customers up to b's head get exactly their units (3), not the share; the one after is a's head.
        guard case .granted(_, 3, _, _) = try lease("a", [(2_000, 1), (8_000, 3), (12_000, 4)], demand: 40) else {
            Issue.record("a's lease for its customers before b's head expected"); return
        }
        #expect(try head("a") == 12_000)
        // b's customer (9000) came before a's head: served; b has nobody left waiting, so no head.
        guard case .granted(_, 1, _, _) = try lease("b", [(9_000, 1)], demand: 40) else {
            Issue.record("b's lease expected"); return
        }
        #expect(try head("b") == nil)
        // Within the tolerance arrivals count as simultaneous: c (12500) is served beside a's head (12000),
        // and a customer of c's after it (14000) is not.
        #expect(try lease("c", [(12_500, 1)]) == .wait(earliestArrivalMicroseconds: 12_000))
        guard case .granted(_, 2, _, _) = try lease("c", [(12_500, 1), (12_900, 2), (14_000, 5)], tolerance: 1_000) else {
            Issue.record("c's lease within the tolerance expected"); return
        }
        #expect(try head("c") == 14_000)
        // A head its instance stopped refreshing (here: long ago on the ledger's clock) is ignored and dropped.
        _ = try connection.send("HSET", stats, "head:a", "12000:1", "head:c", "14000:1")
        guard case .granted(_, let units, _, _) = try lease("d", [(20_000, 2)], demand: 2) else {
            Issue.record("a stale head does not hold d's customers"); return
        }
        #expect(units == 2)
        #expect(try head("a") == nil && head("c") == nil, "stale heads dropped")
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)

        // The fleet order delay: with another instance present, only customers who arrived at least the delay
        // ago are leased (exactly their units); none such: WAIT, and no prefetch. Alone, an instance ignores it.
        let delayed = try LedgerFixture.createOpenSale(on: server, stock: 100)
        func ledgerClock() throws -> Int64 {
            let time = try connection.send("TIME").array ?? []
            return (Int64(time.first?.string ?? "0") ?? 0) * 1_000_000 + (Int64(time.last?.string ?? "0") ?? 0)
        }
        let ledgerMicroseconds = try ledgerClock()
        func delayedLease(_ owner: String, _ points: [(Int64, Int)]) throws -> LeaseAcquisition {
            try ledger.acquireLease(saleID: delayed.id, owner: owner, shardID: "\(owner)#\(UUID().uuidString.prefix(6))", sizing: sizing,
                                    ttlMilliseconds: 60_000, demandUnits: 40,
                                    arrivals: points.map { ArrivalPoint(arrivalMicroseconds: $0.0, cumulativeUnits: $0.1) },
                                    fleetOrderDelayMicroseconds: 100_000)
        }
        guard case .granted(_, let aloneUnits, _, _) = try delayedLease("a", [(ledgerMicroseconds, 1)]), aloneUnits > 1 else {
            Issue.record("alone, the delay does not apply (the share rule, with headroom)"); return
        }
        _ = try ledger.renewLeases(saleID: delayed.id, owner: "b", leases: [], ttlMilliseconds: 60_000)
        #expect(try delayedLease("a", [(ledgerMicroseconds + 50_000, 1)]) == .wait(earliestArrivalMicroseconds: ledgerMicroseconds + 50_000))
        #expect(try delayedLease("a", []) == .wait(earliestArrivalMicroseconds: 0), "no prefetch while the delay applies")
        guard case .granted(_, 2, _, _) = try delayedLease("a", [(ledgerMicroseconds - 500_000, 2), (ledgerMicroseconds + 50_000, 3)]) else {
            Issue.record("only the customers who arrived at least the delay ago are leased"); return
        }
        let delayedHead = try connection.send("HGET", LedgerKeys(saleID: delayed.id).stats, "head:a").string
        #expect(delayedHead?.hasPrefix("\(ledgerMicroseconds + 50_000):") == true, "the customer not yet due is a's head: \(delayedHead ?? "none")")
        #expect(try LedgerFixture.snapshot(on: server, saleID: delayed.id).invariantHolds)

        // An instance whose clock runs 20 s ahead of the ledger's: its customers count as arriving now and are
        // not held for the delay (they would wait out the skew); a clock ahead by less than a second is trusted.
        let skewed = try LedgerFixture.createOpenSale(on: server, stock: 100)
        _ = try ledger.renewLeases(saleID: skewed.id, owner: "b", leases: [], ttlMilliseconds: 60_000)
        // Two customers waiting, a demand of one unit: the second is left as the instance's head.
        func skewedLease(_ owner: String, _ arrival: Int64) throws -> LeaseAcquisition {
            try ledger.acquireLease(saleID: skewed.id, owner: owner, shardID: "\(owner)#\(UUID().uuidString.prefix(6))", sizing: sizing,
                                    ttlMilliseconds: 60_000, demandUnits: 1,
                                    arrivals: [ArrivalPoint(arrivalMicroseconds: arrival, cumulativeUnits: 1),
                                               ArrivalPoint(arrivalMicroseconds: arrival + 1_000, cumulativeUnits: 2)],
                                    fleetOrderDelayMicroseconds: 100_000)
        }
        #expect(try skewedLease("c", ledgerMicroseconds + 800_000) == .wait(earliestArrivalMicroseconds: ledgerMicroseconds + 800_000))
        guard case .granted(_, 1, _, _) = try skewedLease("c", ledgerMicroseconds + 20_000_000) else {
            Issue.record("a clock 20 s ahead does not hold its customers for the skew"); return
        }
        let aheadHead = try #require(try connection.send("HGET", LedgerKeys(saleID: skewed.id).stats, "head:c").string,
                                     "the customer not yet leased is c's head")
        let aheadArrival = try #require(Int64(aheadHead.split(separator: ":")[0]))
        #expect(aheadArrival >= ledgerMicroseconds && aheadArrival < ledgerMicroseconds + 10_000_000,
                "a head from a clock ahead is kept at the ledger's now, not 20 s on: \(aheadHead)")
        #expect(try LedgerFixture.snapshot(on: server, saleID: skewed.id).invariantHolds)

        // An instance that says its clock (as the engine does) has its arrivals moved onto the ledger's clock by
        // its skew, when that is more than a second either way. Here d's clock is right and e's runs 25 s behind.
        let fleet = try LedgerFixture.createOpenSale(on: server, stock: 100)
        let fleetNow = try ledgerClock()
        func fleetLease(_ owner: String, _ points: [(Int64, Int)], clock: Int64?, delay: Int = 0) throws -> LeaseAcquisition {
            try ledger.acquireLease(saleID: fleet.id, owner: owner, shardID: "\(owner)#\(UUID().uuidString.prefix(6))", sizing: sizing,
                                    ttlMilliseconds: 60_000, demandUnits: 1,
                                    arrivals: points.map { ArrivalPoint(arrivalMicroseconds: $0.0, cumulativeUnits: $0.1) },
                                    fleetOrderDelayMicroseconds: delay, instanceClockMicroseconds: clock)
        }
        func fleetHead(_ owner: String) throws -> Int64? {
            try connection.send("HGET", LedgerKeys(saleID: fleet.id).stats, "head:\(owner)").string.flatMap { Int64($0.split(separator: ":")[0]) }
        }
        // d: two customers, a demand of one; the second (500 ms ago) is left as d's head.
        guard case .granted(_, 1, _, _) = try fleetLease("d", [(fleetNow - 600_000, 1), (fleetNow - 500_000, 2)], clock: fleetNow) else {
            Issue.record("d's lease expected"); return
        }
        #expect(try fleetHead("d") == fleetNow - 500_000, "a clock within a second of the ledger's is taken as it is")
        // e's customer arrived 20 ms ago, which e's clock reads as 25 s earlier: without the correction that
        // customer would come 25 s before d's head. With it, d's head came first.
        #expect(try fleetLease("e", [(fleetNow - 25_020_000, 1), (fleetNow - 25_010_000, 2)], clock: fleetNow - 25_000_000)
                == .wait(earliestArrivalMicroseconds: fleetNow - 500_000), "a clock 25 s behind gets its customers no head start")
        let behindHead = try #require(try fleetHead("e"), "e's first customer is its head")
        #expect(behindHead > fleetNow - 500_000 && behindHead < fleetNow + 1_000_000,
                "e's head is on the ledger's clock (about 20 ms ago), not 25 s back: \(behindHead)")
        // Under the fleet order delay (1 s here), a clock 20 s ahead that says so: a customer who arrived 50 ms ago
        // is not due (the WAIT names that customer as f sent it, on its own clock, so f counts the delay from it), ...
        let aheadNow = try ledgerClock()
        _ = try connection.send("HDEL", LedgerKeys(saleID: fleet.id).stats, "head:d", "head:e")
        #expect(try fleetLease("f", [(aheadNow + 19_950_000, 1)], clock: aheadNow + 20_000_000, delay: 1_000_000)
                == .wait(earliestArrivalMicroseconds: aheadNow + 19_950_000), "not due: the delay counts on f's own clock")
        // ... one who arrived 2 s ago is, and one who arrived 0.5 s ago is left as f's head, at its arrival on the
        // ledger's clock: f's customers keep their place (the rule for a clock that does not say so counts them
        // as arriving now).
        guard case .granted(_, 1, _, _) = try fleetLease("f", [(aheadNow + 18_000_000, 1), (aheadNow + 19_500_000, 2)],
                                                         clock: aheadNow + 20_000_000, delay: 1_000_000) else {
            Issue.record("f's customer who arrived more than the delay ago is leased"); return
        }
        let fHead = try #require(try fleetHead("f"), "f's second customer is its head")
        #expect(fHead >= aheadNow - 500_000 && fHead < aheadNow - 200_000, "f's head, 0.5 s ago on the ledger's clock: \(fHead)")
        #expect(try LedgerFixture.snapshot(on: server, saleID: fleet.id).invariantHolds)

        // Malformed arrival pairs are refused with an error and change nothing.
        var arguments = RedisCommand()
        for argument in ["e", "e#1", "1", "50", "60000", "1", "0", "0", "0", "3", "1000", "1"] { arguments.append(argument) }
        let before = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        let refused = try connection.evaluate(LedgerScripts.acquireLease, keys: LedgerKeys(saleID: sale.id).all, arguments: arguments)
        #expect(refused.errorMessage?.hasPrefix("BADARG") == true, "got \(refused)")
        let after = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(after.pool == before.pool && after.leases.count == before.leases.count)
        // So is a clock reading that is not a positive number.
        var badClock = RedisCommand()
        for argument in ["e", "e#2", "1", "50", "60000", "1", "0", "0", "0", "1", "1000", "1", "soon"] { badClock.append(argument) }
        let refusedClock = try connection.evaluate(LedgerScripts.acquireLease, keys: LedgerKeys(saleID: sale.id).all, arguments: badClock)
        #expect(refusedClock.errorMessage?.hasPrefix("BADARG sentUs") == true, "got \(refusedClock)")
        let afterClock = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(afterClock.pool == before.pool && afterClock.leases.count == before.leases.count)
    }

    // One commit batch is decided order by order, each against the ones before it in the same batch (a repeated
    // key or order id, the per-customer limit), and its confirmed orders are written with batch-level commands:
    // ONE outbox entry holding every record, one stock-log entry.
    @Test func aBatchSeesItsOwnOrdersAndWritesOneOutboxEntry() throws {
        let server = try RedisServer()
        let (sale, connection, fence) = try Self.leasedSale(on: server, stock: 10, owner: "a", shardID: "a#1", units: 6)
        let ledger = Ledger(connection: connection)
        let keys = LedgerKeys(saleID: sale.id)
        let stockLogBefore = try connection.send("XLEN", keys.stockLog).integer ?? -1
        func order(_ id: String, _ customer: String, quantity: Int = 1, key: String = "", staleFence: Bool = false) -> PendingCommit {
            PendingCommit(orderID: id, shardID: "a#1", fence: staleFence ? fence + 1 : fence, customerID: customer, quantity: quantity, idempotencyKey: key, delivery: "d-\(id)")
        }
        let outcomes = try ledger.commit(saleID: sale.id, owner: "a", [
            order("1", "alice", key: "k"),          // committed
            order("2", "alice", key: "k"),          // the same key, earlier in this batch: its order
            order("3", "bob", quantity: 2),         // committed: bob's limit reached
            order("4", "bob"),                      // limit, counting order 3
            order("1", "alice", key: "k"),          // the same order id again: a duplicate
            order("5", "carol", staleFence: true),  // another fence
            order("6", "alice"),                    // committed: alice's second unit
        ])
        func committed(_ outcome: CommitOutcome) -> Bool { if case .committed = outcome { true } else { false } }
        func duplicateOf(_ outcome: CommitOutcome) -> String? { if case .duplicate(let record) = outcome { record.orderID } else { nil } }
        #expect(committed(outcomes[0]) && committed(outcomes[2]) && committed(outcomes[6]), "\(outcomes)")
        #expect(duplicateOf(outcomes[1]) == "1" && duplicateOf(outcomes[4]) == "1", "\(outcomes)")
        #expect(outcomes[3] == .limitExceeded(purchased: 2), "\(outcomes[3])")
        #expect(outcomes[5] == .fenced)

        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.sold == 4 && snapshot.leases.first?.remaining == 2 && snapshot.invariantHolds)
        #expect(try LedgerFixture.purchases(on: server, saleID: sale.id) == ["alice": 2, "bob": 2])
        #expect(try connection.send("HGET", keys.users, "alice").string == "2 1 6\nk\r1", "units, then the orders holding them, then their key claims")
        #expect(try connection.send("HGET", keys.users, "bob").string == "2 3")
        #expect(try connection.send("EXISTS", keys.customers).integer == 0, "no past order: no index entry")
        #expect(try connection.send("HLEN", keys.idempotency).integer == 0, "the key's claim is in alice's entry")
        #expect(try connection.send("XLEN", keys.stockLog).integer == stockLogBefore + 1, "one stock-log entry for the batch")
        let entries = StreamEntry.parse(try connection.send("XRANGE", keys.commits, "-", "+"))
        #expect(entries.count == 1, "one commit-log entry for the batch")
        let entry = try #require(entries.first)
        #expect(entry.fields["ids"] == "1 3 6", "the batch's committed orders by id, and nothing else: \(entry.fields)")
        #expect(Set(entry.fields.keys) == ["at", "instance", "ids"])
        #expect(try connection.send("XLEN", keys.outbox).integer == 0, "no record copied into the outbox")
        let records = try LedgerFixture.orders(on: server, saleID: sale.id)
        let writes = try #require(OutboxDocuments.commitWrites(saleID: sale.id, entry: entry,
                                                               records: Dictionary(uniqueKeysWithValues: records.map { ($0.orderID, $0) })))
        #expect(writes.map(\.orderID) == ["1", "3", "6"] && writes.allSatisfy(\.confirmation))
        #expect(OutboxDocuments.commitWrites(saleID: sale.id, entry: entry, records: [:]) == nil, "an order the ledger lacks is not written")
        #expect(Set(records.map(\.orderID)) == ["1", "3", "6"])
        #expect(records.first { $0.orderID == "3" }?.delivery == "d-3")
    }

    /// An open sale (limit 2) with one lease of `units` held by `owner`, and a connection to its ledger.
    // A customer's `users` entry is their units and the ids of the orders holding them: a cancellation takes
    // its order out (first, middle or last), the last one removes the entry, `/me` reads both the entry and
    // the past orders, an order id with a space is refused before anything is written, and an entry that
    // holds the units alone (as earlier versions wrote it) is still released.
    @Test func aCustomersEntryHoldsTheOrdersHoldingTheirUnits() throws {
        let server = try RedisServer()
        let (sale, connection, fence) = try Self.leasedSale(on: server, stock: 10, owner: "a", shardID: "a#1", units: 10)
        let ledger = Ledger(connection: connection)
        let users = LedgerKeys(saleID: sale.id).users
        func order(_ id: String, _ customer: String) -> PendingCommit {
            PendingCommit(orderID: id, shardID: "a#1", fence: fence, customerID: customer, quantity: 1, idempotencyKey: "", delivery: "d")
        }
        _ = try ledger.commit(saleID: sale.id, owner: "a", [order("o1", "alice"), order("o2", "alice"), order("o3", "bob"), order("o4", "carol")])
        _ = try ledger.commit(saleID: sale.id, owner: "a", [order("o5", "bob")])
        #expect(try connection.send("HGET", users, "alice").string == "2 o1 o2")
        #expect(try connection.send("HGET", users, "bob").string == "2 o3 o5", "a later batch appends")

        #expect(try ledger.cancel(saleID: sale.id, orderID: "o1", customerID: "alice") != .notFound)
        #expect(try connection.send("HGET", users, "alice").string == "1 o2")
        #expect(try ledger.cancel(saleID: sale.id, orderID: "o5", customerID: "bob") != .notFound)
        #expect(try connection.send("HGET", users, "bob").string == "1 o3")
        let view = try ledger.customerView(saleID: sale.id, customerID: "alice")
        #expect(view.orders.map(\.orderID) == ["o1", "o2"] && view.orders.map(\.status) == [.cancelled, .confirmed])
        #expect(try ledger.cancel(saleID: sale.id, orderID: "o2", customerID: "alice") != .notFound)
        #expect(try connection.send("HEXISTS", users, "alice").integer == 0, "no unit held: no entry")
        #expect(try ledger.customerView(saleID: sale.id, customerID: "alice").orders.map(\.status) == [.cancelled, .cancelled])

        let ordersBefore = try connection.send("HLEN", LedgerKeys(saleID: sale.id).orders).integer
        #expect(throws: RedisError.self) { try ledger.commit(saleID: sale.id, owner: "a", [order("o6", "dave"), order("o 7", "erin")]) }
        #expect(try connection.send("HLEN", LedgerKeys(saleID: sale.id).orders).integer == ordersBefore, "nothing written")

        _ = try connection.send("HSET", users, "carol", "1")
        #expect(try ledger.cancel(saleID: sale.id, orderID: "o4", customerID: "carol") != .notFound)
        #expect(try connection.send("HEXISTS", users, "carol").integer == 0)
        #expect(try ledger.customerEntries(saleID: sale.id).mapValues(\.orderIDs) == ["bob": ["o3"]])
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)

        // An entry holding other orders but not this one breaks the ledger's own invariant: the cancellation is
        // refused before anything is written (a script's error does not undo its earlier writes).
        _ = try connection.send("HSET", users, "bob", "1 o9")
        let soldBefore = try LedgerFixture.snapshot(on: server, saleID: sale.id).sold
        let pastBefore = try connection.send("ZCARD", LedgerKeys(saleID: sale.id).customers).integer
        #expect(throws: RedisError.self) { try ledger.cancel(saleID: sale.id, orderID: "o3", customerID: "bob") }
        #expect(try ledger.order(saleID: sale.id, orderID: "o3")?.status == .confirmed)
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).sold == soldBefore)
        #expect(try connection.send("ZCARD", LedgerKeys(saleID: sale.id).customers).integer == pastBefore)
        #expect(try connection.send("HGET", users, "bob").string == "1 o9")
    }

    static func leasedSale(on server: RedisServer, stock: Int, owner: String, shardID: String, units: Int) throws -> (SaleDefinition, RedisConnection, Int64) {
        let sale = try LedgerFixture.createOpenSale(on: server, stock: stock, limit: 2)
        let connection = try server.connect()
        let lease = try Ledger(connection: connection).acquireLease(saleID: sale.id, owner: owner, shardID: shardID,
                                                                   sizing: ShardSizing(spreadFactor: 1, maxShardUnits: units), ttlMilliseconds: 60_000)
        guard case .granted(let fence, _, _, _) = lease else { throw RedisServerError("lease expected, got \(lease)") }
        return (sale, connection, fence)
    }

    // A key's claim lives in its customer's entry while its order holds units, and in `idem` once the order is
    // released: a later batch under the key answers the first order either way (read from the entry, then from
    // `idem`), the waitlist and the direct path see entry claims too, a key with a line break is claimed in `idem`,
    // and a failed order frees its key.
    @Test func aKeysClaimFollowsItsOrder() throws {
        let server = try RedisServer()
        let (sale, connection, fence) = try Self.leasedSale(on: server, stock: 10, owner: "a", shardID: "a#1", units: 10)
        let ledger = Ledger(connection: connection)
        let keys = LedgerKeys(saleID: sale.id)
        func order(_ id: String, _ customer: String, key: String) -> PendingCommit {
            PendingCommit(orderID: id, shardID: "a#1", fence: fence, customerID: customer, quantity: 1, idempotencyKey: key, delivery: "d")
        }
        func duplicateOf(_ outcomes: [CommitOutcome]) -> String? { if case .duplicate(let record) = outcomes.first { record.orderID } else { nil } }
        guard case .committed = try ledger.commit(saleID: sale.id, owner: "a", [order("o1", "ann", key: "k")]).first else {
            Issue.record("o1 commits"); return
        }
        #expect(try connection.send("HGET", keys.users, "ann").string == "1 o1\nk\ro1")
        #expect(try connection.send("HLEN", keys.idempotency).integer == 0)
        #expect(duplicateOf(try ledger.commit(saleID: sale.id, owner: "a", [order("o2", "ann", key: "k")])) == "o1", "from the entry")
        guard case .duplicate(let joined) = try ledger.joinWaitlist(saleID: sale.id, owner: "a", customerID: "ann", quantity: 1, orderID: "w1",
                                                                   idempotencyKey: "k", delivery: "d") else {
            Issue.record("the waitlist reads the entry's claim"); return
        }
        #expect(joined.orderID == "o1")
        guard case .duplicate(let direct) = try ledger.directOrder(saleID: sale.id, orderID: "d1", customerID: "ann", quantity: 1, idempotencyKey: "k", delivery: "d") else {
            Issue.record("the direct path reads the entry's claim"); return
        }
        #expect(direct.orderID == "o1")

        // Released: the claim moves to `idem`, the entry goes, and the key still names the (cancelled) order.
        guard case .cancelled = try ledger.cancel(saleID: sale.id, orderID: "o1", customerID: "ann") else { Issue.record("o1 cancels"); return }
        #expect(try connection.send("HEXISTS", keys.users, "ann").integer == 0)
        #expect(try connection.send("HGET", keys.idempotency, "3:annk").string == "o1")
        guard case .duplicate(let cancelled) = try ledger.commit(saleID: sale.id, owner: "a", [order("o3", "ann", key: "k")]).first else {
            Issue.record("the key names the cancelled order"); return
        }
        #expect(cancelled.orderID == "o1" && cancelled.status == .cancelled)

        // A key with a line break cannot sit in an entry: it is claimed in `idem`, and still answers its order.
        guard case .committed = try ledger.commit(saleID: sale.id, owner: "a", [order("o4", "bob", key: "two\nlines")]).first else {
            Issue.record("o4 commits"); return
        }
        #expect(try connection.send("HGET", keys.users, "bob").string == "1 o4")
        #expect(duplicateOf(try ledger.commit(saleID: sale.id, owner: "a", [order("o5", "bob", key: "two\nlines")])) == "o4")
        // ... nor is such a key looked for across two of an entry's claims.
        _ = try ledger.commit(saleID: sale.id, owner: "a", [order("o8", "dan", key: "a"), order("o9", "dan", key: "b")])
        #expect(try connection.send("HGET", keys.users, "dan").string == "2 o8 o9\na\ro8\nb\ro9")
        #expect(try ledger.commit(saleID: sale.id, owner: "a", [order("o10", "dan", key: "a\ro8\nb")]) == [.limitExceeded(purchased: 2)])

        // A failed order frees its key (its attempt bought nothing): the next order under it commits.
        guard case .committed = try ledger.commit(saleID: sale.id, owner: "a", [order("o6", "cid", key: "q")]).first else {
            Issue.record("o6 commits"); return
        }
        _ = try ledger.failOrder(saleID: sale.id, orderID: "o6", reason: "refused")
        guard case .committed = try ledger.commit(saleID: sale.id, owner: "a", [order("o7", "cid", key: "q")]).first else {
            Issue.record("the failed order's key is free again"); return
        }
        #expect(try connection.send("HGET", keys.users, "cid").string == "1 o7\nq\ro7")
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
    }

    // A batch names each lease (shard and fence) once and its orders by the lease's index: orders of two
    // leases interleaved, and of a superseded fence of the first, are decided in arrival order against their own
    // lease (its units, its fence), and each record carries its own lease's shard and fence. A customer's first
    // order in the batch is written with their entry in one piece, and a second order folds it back in; a key
    // with a line break (an escaped batch) is claimed in `idem`.
    @Test func aBatchNamesEachLeaseOnce() throws {
        let server = try RedisServer()
        let (sale, connection, first) = try Self.leasedSale(on: server, stock: 10, owner: "a", shardID: "a#1", units: 3)
        let ledger = Ledger(connection: connection)
        let keys = LedgerKeys(saleID: sale.id)
        let lease = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#2",
                                            sizing: ShardSizing(spreadFactor: 1, maxShardUnits: 3), ttlMilliseconds: 60_000)
        guard case .granted(let second, _, _, _) = lease else { Issue.record("a second lease expected, got \(lease)"); return }
        #expect(second != first)
        func order(_ id: String, _ customer: String, shard: String, fence: Int64, key: String = "") -> PendingCommit {
            PendingCommit(orderID: id, shardID: shard, fence: fence, customerID: customer, quantity: 1, idempotencyKey: key, delivery: "d-\(id)")
        }
        let batch = [
            order("o1", "alice", shard: "a#1", fence: first, key: "k1"),
            order("o2", "bob", shard: "a#2", fence: second),
            order("o3", "carol", shard: "a#1", fence: first + 100),          // a fence the shard's lease does not carry
            order("o4", "dave", shard: "a#2", fence: second, key: "line\nbreak"),
            order("o5", "alice", shard: "a#1", fence: first, key: "k2"),   // alice's second: folds her first back in
            order("o6", "erin", shard: "a#2", fence: second),              // a#2's third and last unit
            order("o7", "frank", shard: "a#2", fence: second),             // a#2 has none left
            order("o8", "alice", shard: "a#1", fence: first, key: "k1"),   // alice's first key, earlier in this batch
        ]
        let outcomes = try ledger.commit(saleID: sale.id, owner: "a", batch)
        func committed(_ index: Int) -> Bool { if case .committed = outcomes[index] { true } else { false } }
        #expect(committed(0) && committed(1) && committed(3) && committed(4) && committed(5), "\(outcomes)")
        #expect(outcomes[2] == .fenced && outcomes[6] == .fenced, "\(outcomes)")
        if case .duplicate(let record) = outcomes[7] { #expect(record.orderID == "o1") } else { Issue.record("o8: \(outcomes[7])") }

        let records = Dictionary(uniqueKeysWithValues: try LedgerFixture.orders(on: server, saleID: sale.id).map { ($0.orderID, $0) })
        #expect(Set(records.keys) == ["o1", "o2", "o4", "o5", "o6"])
        for (id, shard, fence) in [("o1", "a#1", first), ("o5", "a#1", first), ("o2", "a#2", second), ("o4", "a#2", second), ("o6", "a#2", second)] {
            #expect(records[id]?.shardID == shard && records[id]?.fence == fence, "\(id): \(String(describing: records[id]))")
        }
        #expect(records["o4"]?.idempotencyKey == "line\nbreak")
        #expect(try connection.send("HGET", keys.users, "alice").string == "2 o1 o5\nk1\ro1\nk2\ro5")
        #expect(try connection.send("HGET", keys.users, "bob").string == "1 o2")
        #expect(try connection.send("HGET", keys.users, "dave").string == "1 o4", "a key with a line break is not in the entry")
        #expect(try connection.send("HLEN", keys.idempotency).integer == 1, "... but in idem")
        #expect(try ledger.commit(saleID: sale.id, owner: "a", [order("o9", "dave", shard: "a#1", fence: first, key: "line\nbreak")])
                    == [.duplicate(try #require(records["o4"]))], "its claim answers a later batch")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.sold == 5 && snapshot.invariantHolds)
        #expect(Dictionary(uniqueKeysWithValues: snapshot.leases.map { ($0.shardID, $0.remaining) }) == ["a#1": 1, "a#2": 0])
    }

    // The record JSON of a batch holds every string exactly: a batch of plain strings is quoted as it is
    // (byte for byte what the escaper would write), one with a string that needs escaping goes through
    // the escaper, even when only one of its orders does.
    @Test func aBatchWritesEveryStringOfItsRecordsExactly() throws {
        #expect(Ledger.isPlainJSONText("cust-1 A~z:#@.!") && Ledger.isPlainJSONText(""))
        for text in ["a\"b", "a\\b", "a/b", "tab\tin", "caf\u{E9}", "del\u{7F}", "nul\u{0}"] {
            #expect(!Ledger.isPlainJSONText(text), "\(text.debugDescription)")
        }
        // at every position of a long string (the check runs over the bytes in vector-sized steps)
        let long = String(repeating: "x", count: 200)
        #expect(Ledger.isPlainJSONText(long))
        for position in [0, 15, 16, 31, 64, 199] {
            for refused in ["\"", "\\", "/", "\u{1F}", "\u{7F}", "\u{E9}"] {
                var text = Array(long)
                text[position] = Character(refused)
                #expect(!Ledger.isPlainJSONText(String(text)), "\(refused.debugDescription) at \(position)")
            }
        }
        let server = try RedisServer()
        let (sale, connection, fence) = try Self.leasedSale(on: server, stock: 20, owner: "inst-1", shardID: "inst-1#1", units: 20)
        let ledger = Ledger(connection: connection)
        let keys = LedgerKeys(saleID: sale.id)
        func order(_ id: String, _ customer: String, key: String, delivery: String) -> PendingCommit {
            PendingCommit(orderID: id, shardID: "inst-1#1", fence: fence, customerID: customer, quantity: 1, idempotencyKey: key, delivery: delivery)
        }
        let plain = [order("p1", "cust-1", key: "key-1", delivery: "v1.AbC-_9"), order("p2", "Cust 2~!", key: "", delivery: "v1.x")]
        let escaped = [order("e1", "plain-customer", key: "k", delivery: "v1.y"),
                       order("e2", "quote\" back\\ slash/ tab\t caf\u{E9} \u{1F600} del\u{7F}", key: "k\"/\\\u{1}", delivery: "{\"street\":\"Rue d\u{E9}/3\"}")]
        for batch in [plain, escaped] {
            let outcomes = try ledger.commit(saleID: sale.id, owner: "inst-1", batch)
            #expect(outcomes.allSatisfy { if case .committed = $0 { true } else { false } }, "\(outcomes)")
        }
        let records = Dictionary(uniqueKeysWithValues: try LedgerFixture.orders(on: server, saleID: sale.id).map { ($0.orderID, $0) })
        for commit in plain + escaped {
            let record = try #require(records[commit.orderID])
            #expect(record.customerID == commit.customerID && record.idempotencyKey == commit.idempotencyKey && record.delivery == commit.delivery,
                    "\(commit.orderID): \(record)")
            #expect(record.shardID == commit.shardID && record.fence == commit.fence && record.instanceID == "inst-1" && record.quantity == 1)
        }
        let stored = try #require(connection.send("HGET", keys.orders, "p2").string)
        let created = try #require(records["p2"]?.createdAtMilliseconds)
        #expect(stored == #"{"id":"p2","c":"Cust 2~!","q":1,"t":\#(created),"s":"confirmed","k":"","d":"v1.x","sh":"inst-1#1","f":\#(fence),"i":"inst-1","src":"bucket"}"#)
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
    }

    // Cancelling returns the units to the waitlist head first; others' orders are NOT_FOUND; after close CLOSED.
    @Test func cancelServesWaitlistHead() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 2, limit: 2)
        let ledger = Ledger(connection: try server.connect())
        guard case .committed = try ledger.directOrder(saleID: sale.id, orderID: "o1", customerID: "alice", quantity: 1, idempotencyKey: "", delivery: "{}"),
              case .granted(let fence, _, _, _) = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(), ttlMilliseconds: 60_000)
        else { Issue.record("setup"); return }
        // The last unit is in a's lease: bob and carol wait.
        #expect(try ledger.joinWaitlist(saleID: sale.id, owner: "b", customerID: "bob", quantity: 1, orderID: "w-bob", idempotencyKey: "", delivery: "{}") == .waiting(position: 1))
        #expect(try ledger.joinWaitlist(saleID: sale.id, owner: "b", customerID: "carol", quantity: 1, orderID: "w-carol", idempotencyKey: "", delivery: "{}") == .waiting(position: 2))
        #expect(try ledger.joinWaitlist(saleID: sale.id, owner: "b", customerID: "bob", quantity: 1, orderID: "w-bob2", idempotencyKey: "", delivery: "{}") == .waiting(position: 1))

        #expect(try ledger.cancel(saleID: sale.id, orderID: "o1", customerID: "mallory") == .notFound)
        guard case .cancelled(let cancelled) = try ledger.cancel(saleID: sale.id, orderID: "o1", customerID: "alice") else { Issue.record("cancel"); return }
        #expect(cancelled.status == .cancelled)
        let orders = try LedgerFixture.orders(on: server, saleID: sale.id)
        #expect(orders.contains { $0.orderID == "w-bob" && $0.customerID == "bob" && $0.source == "waitlist" }, "bob, the head, got the unit")
        #expect(try LedgerFixture.purchases(on: server, saleID: sale.id) == ["bob": 1])

        // a sells its last unit: sold out, the sale closes, carol is unserved, cancels are refused.
        let last = PendingCommit(orderID: "o2", shardID: "a#1", fence: fence, customerID: "dave", quantity: 1, idempotencyKey: "", delivery: "{}")
        guard case .committed = try ledger.commit(saleID: sale.id, owner: "a", [last])[0] else { Issue.record("last unit"); return }
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.status == .closed && snapshot.closedReason == .soldOut && snapshot.sold == 2)
        #expect(snapshot.statistics["waitlistUnserved"] == 1 && snapshot.statistics["waitlistServed"] == 1 && snapshot.statistics["cancelled"] == 1)
        #expect(try ledger.cancel(saleID: sale.id, orderID: "o2", customerID: "dave") == .closed(.soldOut))
        #expect(snapshot.invariantHolds)
    }

    // The textbook path never oversells either: 5 units, 10 customers of 1 unit.
    @Test func directOrderPath() throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 5, limit: 1)
        let ledger = Ledger(connection: try server.connect())
        var committed = 0
        for index in 0..<10 {
            let outcome = try ledger.directOrder(saleID: sale.id, orderID: "d\(index)", customerID: "c\(index)", quantity: 1, idempotencyKey: "", delivery: "{}")
            if case .committed = outcome { committed += 1 } else { #expect(outcome == .closed(.soldOut)) }
        }
        #expect(committed == 5)
        #expect(try ledger.directOrder(saleID: sale.id, orderID: "x", customerID: "c0", quantity: 1, idempotencyKey: "", delivery: "{}") == .closed(.soldOut))
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
    }

    // A sale past its end closes by itself (reason ended) on the next ledger call, leases revoked.
    @Test func saleEndsByItself() throws {
        let server = try RedisServer()
        let ledger = Ledger(connection: try server.connect())
        let now = LedgerFixture.nowMilliseconds
        let sale = SaleDefinition(id: "short", name: "Short", stock: 5, startsAtMilliseconds: now - 1_000, endsAtMilliseconds: now + 300)
        #expect(try ledger.createSale(sale))
        guard case .granted = try ledger.acquireLease(saleID: sale.id, owner: "a", shardID: "a#1", sizing: ShardSizing(), ttlMilliseconds: 60_000) else {
            Issue.record("lease"); return
        }
        Thread.sleep(forTimeInterval: 0.35)
        let closed = try #require(try ledger.closeSale(saleID: sale.id))
        #expect(closed.0 == .closed && closed.1 == .ended)
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.leases.isEmpty && snapshot.pool == 5 && snapshot.invariantHolds)
    }
}
