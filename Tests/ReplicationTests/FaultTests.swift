import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

/// Blocks the committer thread of a sale until released (simulates a paused process: GC, SIGSTOP, network stall).
final class CommitterPause: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func hold(_ engine: ReservationService, saleID: String) async {
        let semaphore = semaphore
        let started = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            Task { try? await engine.committer.perform(saleID: saleID) { _ in started.signal(); semaphore.wait() } }
        }
        started.wait()
    }
    func release() { semaphore.signal() }
}

@Suite("Faults: fencing, Redis crash, the tail of the sale", .serialized)
struct FaultTests {
    // A's lease expires while A is paused and is re-leased to B; A's late commit is rejected whole,
    // its customers get RETRY_LATER, and nothing is oversold.
    @Test func pausedInstanceIsFencedOff() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 40, limit: 2)
        let instanceA = LedgerFixture.engine(on: server, instanceID: "A", leaseTTLMilliseconds: 400, maxShardUnits: 20)
        let instanceB = LedgerFixture.engine(on: server, instanceID: "B", leaseTTLMilliseconds: 400, maxShardUnits: 20)

        let first = await instanceA.reserve(saleID: sale.id, customerID: "a-0", quantity: 1, idempotencyKey: nil, delivery: "{}")
        guard case .confirmed = first else {
            Issue.record("A's first order must be confirmed: \(first)"); return
        }
        let leaseOfA = try LedgerFixture.snapshot(on: server, saleID: sale.id).leases
        #expect(leaseOfA.count == 1 && leaseOfA.first?.owner == "A")

        let pause = CommitterPause()
        await pause.hold(instanceA, saleID: sale.id)
        // A takes units locally; the commits queue behind the pause.
        let lateOrders = Task {
            await withTaskGroup(of: ReservationOutcome.self) { group in
                for index in 1...5 {
                    group.addTask { await instanceA.reserve(saleID: sale.id, customerID: "a-\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}") }
                }
                var outcomes: [ReservationOutcome] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
        }
        try await Task.sleep(for: .milliseconds(700))  // A's lease expires in the ledger

        // B sells everything left, including the units A's expired lease held (B's reconciler renews B's
        // lease meanwhile, however slow the machine).
        let soldByB = await withReconcilers([instanceB]) {
            var sold = 0
            for index in 0..<19 {
                if case .confirmed(let record) = await instanceB.reserve(saleID: sale.id, customerID: "b-\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}") {
                    sold += record.quantity
                }
            }
            return sold
        }
        #expect(soldByB == 19, "B sold 19 units")
        let afterExpiry = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(afterExpiry.leases.allSatisfy { $0.owner == "B" }, "A's expired lease was reclaimed")

        pause.release()
        let outcomes = await lateOrders.value
        #expect(outcomes.count == 5)
        for outcome in outcomes {
            guard case .rejected(let error, let retryAfter) = outcome else { Issue.record("late commit confirmed: \(outcome)"); continue }
            #expect(error.code == .retryLater)
            #expect(retryAfter == 1)
        }
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds)
        #expect(snapshot.sold == 20, "A's first order and B's 19; none of A's late ones")
        let customers = Set(try LedgerFixture.orders(on: server, saleID: sale.id).map(\.customerID))
        #expect(customers.isDisjoint(with: (1...5).map { "a-\($0)" }), "none of A's late orders is in the ledger")
        await instanceA.shutdown()
        await instanceB.shutdown()
    }

    // Redis is SIGKILLed mid-run and restarted on its AOF: every acknowledged order survives, the invariant holds.
    @Test func acknowledgedOrdersSurviveRedisCrash() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100_000, limit: 2)
        let engine = LedgerFixture.engine(on: server, instanceID: "solo", leaseTTLMilliseconds: 3_000, maxShardUnits: 256)
        let confirmedCount = SharedCounter()
        let retryLater = SharedCounter()

        let acknowledged = try await withThrowingTaskGroup(of: [OrderRecord].self) { group in
            for worker in 0..<32 {
                group.addTask {
                    var mine: [OrderRecord] = []
                    for index in 0..<150 {
                        let outcome = await engine.reserve(saleID: sale.id, customerID: "c-\(worker)-\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}")
                        if case .confirmed(let record) = outcome {
                            mine.append(record)
                            confirmedCount.increment()
                        } else if case .rejected(let error, _) = outcome, error.code == .retryLater {
                            retryLater.increment()
                        }
                        if index % 25 == 0 { try await Task.sleep(for: .milliseconds(5)) }
                    }
                    return mine
                }
            }
            group.addTask {
                while confirmedCount.value < 500 { try await Task.sleep(for: .milliseconds(5)) }
                server.kill()
                try await Task.sleep(for: .milliseconds(300))
                try server.restart()
                return []
            }
            var all: [OrderRecord] = []
            for try await part in group { all.append(contentsOf: part) }
            return all
        }
        await engine.shutdown()
        #expect(acknowledged.count >= 500)
        #expect(retryLater.value > 0, "orders during the outage were refused with RETRY_LATER, not hung or confirmed")
        let ledger = Dictionary(uniqueKeysWithValues: try LedgerFixture.orders(on: server, saleID: sale.id).map { ($0.orderID, $0) })
        let missing = acknowledged.filter { ledger[$0.orderID] == nil }
        #expect(missing.isEmpty, "\(missing.count) acknowledged orders lost")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds)
        #expect(snapshot.sold >= acknowledged.count)
    }

    // Three instances, 10 units: all 10 sell; customers who find no free unit while leases hold some are
    // waitlisted (never SOLD_OUT), and the expired leases' units serve the waitlist in arrival order.
    @Test func tailOfTheSale() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 10, limit: 1)
        let engines = ["A", "B", "C"].map { LedgerFixture.engine(on: server, instanceID: $0, leaseTTLMilliseconds: 600, maxShardUnits: 100, spreadFactor: 2) }
        // Each instance takes a lease and sells one unit: B first (a lease of 5), then C, then A.
        for index in [1, 2, 0] {
            let engine = engines[index]
            let outcome = await engine.reserve(saleID: sale.id, customerID: "first-\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}")
            guard case .confirmed = outcome else { Issue.record("first order on \(index): \(outcome)"); return }
        }
        let held = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(held.sold == 3)
        let heldByOthers = held.leases.filter { $0.owner != "A" }.reduce(0) { $0 + $1.remaining }
        #expect(heldByOthers == 4, "B holds 4 units in its lease")

        // Customers arrive at A only, one after another.
        var positions: [String: Int] = [:]
        var confirmedAtA = 0
        for index in 0..<12 {
            let customer = "late-\(index)"
            switch await engines[0].reserve(saleID: sale.id, customerID: customer, quantity: 1, idempotencyKey: nil, delivery: "{}") {
            case .confirmed: confirmedAtA += 1
            case .waitlisted(let position): positions[customer] = position
            case .rejected(let error, _):
                let soldNow = try LedgerFixture.snapshot(on: server, saleID: sale.id).sold
                #expect(error.code == .soldOut && soldNow == 10, "only SOLD_OUT, and only once all 10 are sold: \(error)")
            }
        }
        #expect(!positions.isEmpty, "customers wait while B and C hold units")
        let arrivalOrder = positions.sorted { $0.value < $1.value }.map(\.key)
        #expect(arrivalOrder == positions.keys.sorted { Int($0.dropFirst(5))! < Int($1.dropFirst(5))! }, "positions follow arrival order")

        // B and C stop renewing; A's reconciler reclaims their expired leases for the waitlist head.
        let allSold = try await withReconcilers([engines[0]]) {
            try eventually(seconds: 10) { try LedgerFixture.snapshot(on: server, saleID: sale.id).sold == 10 }
        }
        #expect(allSold, "all 10 units sell")
        let orders = try LedgerFixture.orders(on: server, saleID: sale.id)
        let servedFromWaitlist = Set(orders.filter { $0.source == "waitlist" }.map(\.customerID))
        let expectedServed = Set(arrivalOrder.prefix(servedFromWaitlist.count))
        #expect(servedFromWaitlist.count == 10 - 3 - confirmedAtA)
        #expect(servedFromWaitlist == expectedServed, "the waitlist is served from its head, in arrival order")
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds)
        #expect(snapshot.status == .closed && snapshot.closedReason == .soldOut)
        #expect(snapshot.statistics["waitlistUnserved"] == Int64(positions.count - servedFromWaitlist.count))
        for engine in engines { await engine.shutdown() }
    }
}
