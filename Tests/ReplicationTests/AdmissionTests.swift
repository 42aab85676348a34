import Foundation
import Logging
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

@Suite("FIFO admission against a real ledger", .serialized)
struct AdmissionTests {
    /// Leases are small so that a crowd meets refills: a lease asked for waiting customers is capped by the
    /// fair share (pool / spreadFactor), one asked for without a demand also by maxShardUnits.
    static func engine(on server: RedisServer, instanceID: String = "fifo", maxShardUnits: Int, spreadFactor: Int,
                       fleetOrderDelayMicroseconds: Int = 0) -> ReservationService {
        var configuration = EngineConfiguration(
            // Leases outlive the test even when a busy machine starves the reconciler: an expired lease
            // fences its commits (RETRY_LATER by design), which is not what these tests are about.
            instanceID: instanceID, leaseTTLMilliseconds: 20_000, leaseRenewMarginMilliseconds: 5_000, leaseSafetyMarginMilliseconds: 1_000,
            shardSizing: ShardSizing(spreadFactor: spreadFactor, maxShardUnits: maxShardUnits), reconcileIntervalMilliseconds: 50
        )
        configuration.recordAdmissionOrder = true
        configuration.fleetOrderDelayMicroseconds = fleetOrderDelayMicroseconds
        return ReservationService(redis: server.configuration, configuration: configuration, logger: .init(label: "test.admission"))
    }

    // 2,000 concurrent reservations meet leases of at most 100 units: every one is granted, strictly in arrival
    // order within the instance, and none is told to retry later.
    @Test func aCrowdIsServedInArrivalOrder() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 5_000, limit: 1)
        let engine = Self.engine(on: server, maxShardUnits: 100, spreadFactor: 50)
        // The reconciler renews the leases meanwhile, however slow the machine (an expired lease would fence
        // its commits: RETRY_LATER by design).
        let outcomes = await withReconcilers([engine]) {
            await withTaskGroup(of: ReservationOutcome.self, returning: [ReservationOutcome].self) { group in
                for index in 0..<2_000 {
                    group.addTask { await engine.reserve(saleID: sale.id, customerID: "crowd-\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}") }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        let confirmed = outcomes.filter { if case .confirmed = $0 { true } else { false } }.count
        #expect(confirmed == 2_000, "every reservation is confirmed: \(Self.tally(outcomes))")
        let log = engine.admissionGrantLog(saleID: sale.id)
        #expect(log.count == 2_000)
        #expect(zip(log, log.dropFirst()).allSatisfy { $0 < $1 }, "grants follow arrival order exactly")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds && snapshot.sold == 2_000)
        await engine.shutdown()
    }

    // 2,000 customers for 1,000 units on one instance: the first 1,000 arrivals buy, everyone else ends with
    // SOLD_OUT (or, before the last unit is sold, a waitlist place), never RETRY_LATER; nothing is oversold.
    @Test func aSellOutCrowdGetsDefinitiveAnswers() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 1_000, limit: 1)
        let engine = Self.engine(on: server, maxShardUnits: 64, spreadFactor: 16)
        // The reconciler renews the leases meanwhile, however slow the machine (an expired lease would fence
        // its commits: RETRY_LATER by design).
        let outcomes = await withReconcilers([engine]) {
            await withTaskGroup(of: ReservationOutcome.self, returning: [ReservationOutcome].self) { group in
                for index in 0..<2_000 {
                    group.addTask { await engine.reserve(saleID: sale.id, customerID: "crowd-\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}") }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        let tally = Self.tally(outcomes)
        #expect(tally["201"] == 1_000, "\(tally)")
        let retryDetails = Set(outcomes.compactMap { outcome -> String? in
            if case .rejected(let error, _) = outcome, error.code == .retryLater { return error.detail }
            return nil
        })
        #expect(tally["RETRY_LATER"] == nil, "no healthy customer is told to retry: \(tally) \(retryDetails)")
        #expect(Set(tally.keys).isSubset(of: ["201", "202", "SOLD_OUT"]), "\(tally)")
        let log = engine.admissionGrantLog(saleID: sale.id)
        #expect(zip(log, log.dropFirst()).allSatisfy { $0 < $1 }, "grants follow arrival order exactly")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds && snapshot.sold == 1_000 && snapshot.status == .closed)
        await engine.shutdown()
    }

    // /stock, /sales/{id} and the live push read the instance's view: it is never more than 100 ms behind
    // the ledger, even with no reconcile tick in between (none runs in this test).
    @Test func theStockViewIsFresh() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100, limit: 1)
        let engine = Self.engine(on: server, maxShardUnits: 10, spreadFactor: 10)
        for index in 0..<10 {
            _ = await engine.reserve(saleID: sale.id, customerID: "c\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}")
        }
        try await Task.sleep(for: .milliseconds(Int(ReservationService.viewFreshnessMilliseconds) + 10))
        let view = try #require(try await engine.stock(saleID: sale.id))
        #expect(view.sold == 10, "the view follows the ledger within 100 ms")
        await engine.shutdown()
    }

    // Across instances a lease follows arrival: while another instance's first waiting customer ("b", left
    // in the ledger as it is by b's lease requests) arrived earlier, this instance's later customer waits;
    // one the front stamped as earlier is leased exactly their unit at once.
    @Test func leasesFollowTheFleetsArrivalOrder() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 10, limit: 2)
        let engine = Self.engine(on: server, instanceID: "a", maxShardUnits: 10, spreadFactor: 1)
        let connection = try server.connect()
        let stats = LedgerKeys(saleID: sale.id).stats
        let bArrival = wallClockMicroseconds()
        func keepBWaiting() throws {
            let time = try connection.send("TIME").array ?? []
            let ledgerMilliseconds = (Int64(time.first?.string ?? "0") ?? 0) * 1_000 + (Int64(time.last?.string ?? "0") ?? 0) / 1_000
            _ = try connection.send("HSET", stats, "head:b", "\(bArrival):\(ledgerMilliseconds)")
        }
        func sold() throws -> Int { try LedgerFixture.snapshot(on: server, saleID: sale.id).sold }

        // Stamped 1 s before b's customer: served now, from a lease of exactly its one unit (no headroom).
        try keepBWaiting()
        let early = await engine.reserve(saleID: sale.id, customerID: "early", quantity: 1, idempotencyKey: nil, delivery: "{}",
                                         arrivalMicroseconds: bArrival - 1_000_000)
        guard case .confirmed = early else { Issue.record("the earlier customer is served: \(early)"); return }
        let afterEarly = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(afterEarly.sold == 1 && afterEarly.leases.map(\.remaining) == [0], "a lease of exactly the earlier customer's unit")

        // Arriving now, after b's customer: no lease while b's customer waits; this instance's head is left
        // for b to see.
        try keepBWaiting()
        let late = Task { await engine.reserve(saleID: sale.id, customerID: "late", quantity: 1, idempotencyKey: nil, delivery: "{}") }
        var headA: String?
        for _ in 0..<100 where headA == nil {
            try await Task.sleep(for: .milliseconds(20))
            try keepBWaiting()
            headA = try connection.send("HGET", stats, "head:a").string
        }
        let leftArrival = try #require(headA.flatMap { Int64($0.split(separator: ":")[0]) }, "a's waiting customer is left in the ledger")
        #expect(leftArrival > bArrival)
        #expect(try sold() == 1, "nothing leased for the later customer while b's earlier one waits")
        // b stops asking (its head goes stale): the later customer is served.
        let outcome = await late.value
        guard case .confirmed = outcome else { Issue.record("the later customer is served once b's head is stale: \(outcome)"); return }
        #expect(try sold() == 2)
        #expect(try eventually(seconds: 2) { try connection.send("HEXISTS", stats, "head:a").integer == 0 }, "no head left once nobody waits")
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
        await engine.shutdown()
    }

    // The fleet order delay: the last unit goes to the customer who arrived first (stamped by the front),
    // though they reached their instance after another instance's customer had asked for it.
    @Test func theFleetOrderDelayServesTheEarlierArrivalWhoCameLater() async throws {
        try await Self.earlierArrivalWhoCameLaterWins(sameInstance: false)
    }

    // Within one instance too: a customer the front stamped earlier but handed over later parks ahead of the
    // one already waiting there, and gets the last unit (here both wait out the fleet order delay).
    @Test func anEarlierStampParksAheadOnItsInstance() async throws {
        try await Self.earlierArrivalWhoCameLaterWins(sameInstance: true)
    }

    /// One unit, two instances present with the 300 ms fleet order delay: the customer "late" (stamped at the
    /// opening) reaches instance b (or a, `sameInstance`) first; 50 ms later "early", stamped 100 ms before
    /// the opening, reaches a. "early" must get the unit, and "late" a waitlist place or SOLD_OUT.
    static func earlierArrivalWhoCameLaterWins(sameInstance: Bool) async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 1, limit: 1)
        let delay = 300_000
        let a = Self.engine(on: server, instanceID: "a", maxShardUnits: 10, spreadFactor: 1, fleetOrderDelayMicroseconds: delay)
        let b = Self.engine(on: server, instanceID: "b", maxShardUnits: 10, spreadFactor: 1, fleetOrderDelayMicroseconds: delay)
        let ledger = Ledger(connection: try server.connect())
        for owner in ["a", "b"] { _ = try ledger.renewLeases(saleID: sale.id, owner: owner, leases: [], ttlMilliseconds: 20_000) }
        let opening = wallClockMicroseconds()
        let lateInstance = sameInstance ? a : b
        let late = Task {
            await lateInstance.reserve(saleID: sale.id, customerID: "late", quantity: 1, idempotencyKey: nil, delivery: "{}", arrivalMicroseconds: opening)
        }
        try await Task.sleep(for: .milliseconds(50))
        let early = await a.reserve(saleID: sale.id, customerID: "early", quantity: 1, idempotencyKey: nil, delivery: "{}",
                                    arrivalMicroseconds: opening - 100_000)
        let lateOutcome = await late.value
        guard case .confirmed = early else { Issue.record("the earlier arrival gets the unit: \(early), later one \(lateOutcome)"); return }
        switch lateOutcome {
        case .waitlisted: break
        case .rejected(let error, _) where error.code == .soldOut: break
        default: Issue.record("the later arrival waits or is told sold out: \(lateOutcome)")
        }
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.sold == 1 && snapshot.invariantHolds)
        #expect(try LedgerFixture.purchases(on: server, saleID: sale.id) == ["early": 1])
        await a.shutdown()
        await b.shutdown()
    }

    static func tally(_ outcomes: [ReservationOutcome]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for outcome in outcomes {
            switch outcome {
            case .confirmed: counts["201", default: 0] += 1
            case .waitlisted: counts["202", default: 0] += 1
            case .rejected(let error, _): counts[error.code.rawValue, default: 0] += 1
            }
        }
        return counts
    }
}
