import Foundation
@testable import Replication
import ReservationEngine
import Testing
import TestSupport

/// Runs reconcile ticks for the engines until the body returns.
func withReconcilers<Value: Sendable>(_ engines: [ReservationService], intervalMilliseconds: Int = 50, _ body: () async throws -> Value) async rethrows -> Value {
    try await withThrowingTaskGroup(of: Void.self, returning: Value.self) { group in
        for engine in engines {
            group.addTask {
                while !Task.isCancelled {
                    await engine.reconcileAll()
                    try? await Task.sleep(for: .milliseconds(intervalMilliseconds))
                }
            }
        }
        let value = try await body()
        group.cancelAll()
        return value
    }
}

/// Polls `condition` every 20 ms for at most `seconds`; returns whether it became true.
func eventually(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return try condition()
}

@Suite("Reservations against a real ledger", .serialized)
struct ReservationConcurrencyTests {
    // Three engine instances, 20,000 attempts from 3,000 random customers across many tasks: never an
    // oversell, never a customer above the limit, every acknowledged order in the ledger exactly once.
    @Test(arguments: [1_000, 1, 10_000_000])
    func threeInstancesNeverOversell(stock: Int) async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: stock, limit: 2)
        let engines = (0..<3).map { LedgerFixture.engine(on: server, instanceID: "instance-\($0)", maxShardUnits: 256) }

        let attempts = 20_000
        let workers = 64
        let confirmed = try await withReconcilers(engines) {
            try await withThrowingTaskGroup(of: [OrderRecord].self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        var generator = SystemRandomNumberGenerator()
                        var mine: [OrderRecord] = []
                        for attempt in stride(from: worker, to: attempts, by: workers) {
                            let engine = engines[attempt % engines.count]
                            let customer = "customer-\(Int.random(in: 0..<3_000, using: &generator))"
                            let outcome = await engine.reserve(saleID: sale.id, customerID: customer, quantity: Int.random(in: 1...2, using: &generator),
                                                               idempotencyKey: nil, delivery: "{}")
                            if case .confirmed(let record) = outcome { mine.append(record) }
                        }
                        return mine
                    }
                }
                var all: [OrderRecord] = []
                for try await part in group { all.append(contentsOf: part) }
                return all
            }
        }
        // Demand (about 30,000 units) exceeds a small stock: waitlisted customers are served from freed
        // units until everything is sold. A huge stock is not sold out: the acknowledged orders are all.
        if stock <= 1_000 {
            let soldOut = try await withReconcilers(engines) {
                try eventually(seconds: 20) { try LedgerFixture.snapshot(on: server, saleID: sale.id).sold == stock }
            }
            #expect(soldOut, "every unit sells")
        }
        for engine in engines { await engine.shutdown() }

        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.invariantHolds, "pool + leases + sold == stock")
        #expect(snapshot.sold <= stock)
        if stock <= 1_000 {
            #expect(snapshot.sold == stock)
            #expect(snapshot.status == .closed && snapshot.closedReason == .soldOut)
        }

        let ledgerOrders = try LedgerFixture.orders(on: server, saleID: sale.id)
        #expect(ledgerOrders.reduce(0) { $0 + $1.quantity } == snapshot.sold)
        let byID = Dictionary(uniqueKeysWithValues: ledgerOrders.map { ($0.orderID, $0) })
        #expect(Set(confirmed.map(\.orderID)).count == confirmed.count, "no order acknowledged twice")
        for order in confirmed {
            #expect(byID[order.orderID]?.customerID == order.customerID && byID[order.orderID]?.quantity == order.quantity,
                    "acknowledged order \(order.orderID) is in the ledger")
        }
        let purchases = try LedgerFixture.purchases(on: server, saleID: sale.id)
        #expect(purchases.values.allSatisfy { $0 <= 2 }, "no customer above the limit")
        var perCustomer: [String: Int] = [:]
        for order in ledgerOrders { perCustomer[order.customerID, default: 0] += order.quantity }
        #expect(perCustomer == purchases, "per-customer counts match the orders")
        if stock > 1_000 {
            #expect(confirmed.reduce(0) { $0 + $1.quantity } == snapshot.sold, "with stock to spare every sold unit was acknowledged")
        }
    }

    // The same idempotency key from 50 concurrent tasks over three instances yields one order.
    @Test func idempotencyKeyReplayedConcurrently() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100, limit: 2)
        let engines = (0..<3).map { LedgerFixture.engine(on: server, instanceID: "instance-\($0)") }
        let outcomes = await withTaskGroup(of: ReservationOutcome.self) { group in
            for task in 0..<50 {
                group.addTask {
                    await engines[task % 3].reserve(saleID: sale.id, customerID: "alice", quantity: 2, idempotencyKey: "checkout-1", delivery: "{}")
                }
            }
            var all: [ReservationOutcome] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        let orderIDs = Set(outcomes.compactMap { outcome -> String? in
            if case .confirmed(let record) = outcome { return record.orderID }
            return nil
        })
        #expect(orderIDs.count == 1, "one order: \(outcomes)")
        #expect(outcomes.allSatisfy { if case .confirmed = $0 { true } else { false } }, "every replay answers the order")
        let orders = try LedgerFixture.orders(on: server, saleID: sale.id)
        #expect(orders.count == 1)
        #expect(try LedgerFixture.purchases(on: server, saleID: sale.id) == ["alice": 2])
        for engine in engines { await engine.shutdown() }
        #expect(try LedgerFixture.snapshot(on: server, saleID: sale.id).invariantHolds)
    }

    // A customer's order in flight in one sale (its commit not answered yet) leaves their limit in another
    // sale alone: both orders are placed and confirmed.
    @Test func inFlightUnitsStayInTheirSale() async throws {
        let server = try RedisServer()
        let phones = try LedgerFixture.createOpenSale(on: server, stock: 100, limit: 2)
        let tablets = try LedgerFixture.createOpenSale(on: server, stock: 100, limit: 2)
        let engine = LedgerFixture.engine(on: server, instanceID: "instance-0", leaseTTLMilliseconds: 5_000)
        for sale in [phones, tablets] {  // leases taken, so the held orders below wait in their commit only
            guard case .confirmed = await engine.reserve(saleID: sale.id, customerID: "warm-up", quantity: 1, idempotencyKey: nil, delivery: "{}") else {
                Issue.record("warm-up order in \(sale.id) not confirmed")
                return
            }
        }
        server.pause()
        let phone = Task { await engine.reserve(saleID: phones.id, customerID: "alice", quantity: 2, idempotencyKey: nil, delivery: "{}") }
        #expect(eventually(seconds: 5) { engine.inFlight.pendingUnits(saleID: phones.id, customerID: "alice") == 2 })
        let tablet = Task { await engine.reserve(saleID: tablets.id, customerID: "alice", quantity: 2, idempotencyKey: nil, delivery: "{}") }
        #expect(eventually(seconds: 5) { engine.inFlight.pendingUnits(saleID: tablets.id, customerID: "alice") == 2 },
                "the tablet order is in flight too, not refused for the phones")
        server.resume()
        for (name, task) in [("phones", phone), ("tablets", tablet)] {
            let outcome = await task.value
            guard case .confirmed(let record) = outcome else {
                Issue.record("\(name): \(outcome)")
                continue
            }
            #expect(record.quantity == 2)
        }
        #expect(engine.inFlight.count == 0, "nothing left in flight")
        await engine.shutdown()
        #expect(try LedgerFixture.purchases(on: server, saleID: phones.id)["alice"] == 2)
        #expect(try LedgerFixture.purchases(on: server, saleID: tablets.id)["alice"] == 2)
    }

    // An instance that tracks a sale but has no customers for it never takes a lease (no hoarding).
    @Test func idleInstanceDoesNotHoardStock() async throws {
        let server = try RedisServer()
        let sale = try LedgerFixture.createOpenSale(on: server, stock: 100)
        let idle = LedgerFixture.engine(on: server, instanceID: "idle")
        for _ in 0..<5 { await idle.reconcileAll() }
        let snapshot = try LedgerFixture.snapshot(on: server, saleID: sale.id)
        #expect(snapshot.leases.isEmpty && snapshot.pool == 100, "leases: \(snapshot.leases)")
        await idle.shutdown()
    }
}
