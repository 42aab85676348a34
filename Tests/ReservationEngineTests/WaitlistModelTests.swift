import ReservationEngine
import Testing

@Suite("WaitlistModel")
struct WaitlistModelTests {
    // Freed units serve waiters in arrival order; serving stops at a head that does not fit yet.
    @Test func servesInArrivalOrderAndNeverOvertakes() {
        var waitlist = WaitlistModel()
        #expect(waitlist.join(.init(customerID: "a", quantity: 1)) == 1)
        #expect(waitlist.join(.init(customerID: "b", quantity: 2)) == 2)
        #expect(waitlist.join(.init(customerID: "c", quantity: 1)) == 3)
        #expect(waitlist.join(.init(customerID: "a", quantity: 1)) == 1, "one entry per customer")

        let first = waitlist.serve(pool: 2, unsold: 5, limit: 2) { _ in 0 }
        #expect(first.outcomes == [.served(.init(customerID: "a", quantity: 1))])
        #expect(first.pool == 1, "b needs 2: c (1) must not overtake b")
        #expect(waitlist.position(of: "b") == 1)

        let second = waitlist.serve(pool: 3, unsold: 4, limit: 2) { _ in 0 }
        #expect(second.outcomes == [.served(.init(customerID: "b", quantity: 2)), .served(.init(customerID: "c", quantity: 1))])
        #expect(second.pool == 0)
        #expect(waitlist.count == 0)
    }

    // A head that can never be served (more than is unsold, or over the limit) is dropped as unserved.
    @Test func unservableHeadDoesNotBlock() {
        var waitlist = WaitlistModel()
        _ = waitlist.join(.init(customerID: "big", quantity: 2))
        _ = waitlist.join(.init(customerID: "limited", quantity: 1))
        _ = waitlist.join(.init(customerID: "small", quantity: 1))
        let result = waitlist.serve(pool: 1, unsold: 1, limit: 2) { $0 == "limited" ? 2 : 0 }
        #expect(result.outcomes == [
            .unserved(.init(customerID: "big", quantity: 2), .insufficientStock),
            .unserved(.init(customerID: "limited", quantity: 1), .limitExceeded),
            .served(.init(customerID: "small", quantity: 1)),
        ])
        #expect(result.pool == 0)
    }

    // At close every waiter is unserved.
    @Test func closeAll() {
        var waitlist = WaitlistModel()
        _ = waitlist.join(.init(customerID: "a", quantity: 1))
        _ = waitlist.join(.init(customerID: "b", quantity: 1))
        #expect(waitlist.closeAll().map(\.customerID) == ["a", "b"])
        #expect(waitlist.count == 0)
    }
}

@Suite("SaleDefinition and SaleWindow")
struct SaleDefinitionTests {
    static let valid = SaleDefinition(id: "phones-2026", name: "Phones", stock: 1_000, startsAtMilliseconds: 1_000, endsAtMilliseconds: 61_000, perCustomerLimit: 2)

    // The reference sale is valid.
    @Test func validSale() throws {
        try Self.valid.validate()
    }

    // Each out-of-range field is refused with INVALID_REQUEST.
    @Test(arguments: [
        { (sale: inout SaleDefinition) in sale.id = "" },
        { (sale: inout SaleDefinition) in sale.id = "has space" },
        { (sale: inout SaleDefinition) in sale.id = String(repeating: "x", count: 65) },
        { (sale: inout SaleDefinition) in sale.name = "" },
        { (sale: inout SaleDefinition) in sale.stock = 0 },
        { (sale: inout SaleDefinition) in sale.stock = 10_000_001 },
        { (sale: inout SaleDefinition) in sale.perCustomerLimit = 0 },
        { (sale: inout SaleDefinition) in sale.perCustomerLimit = 101 },
        { (sale: inout SaleDefinition) in sale.endsAtMilliseconds = sale.startsAtMilliseconds },
        { (sale: inout SaleDefinition) in sale.endsAtMilliseconds = sale.startsAtMilliseconds + 604_800_001 },
    ] as [@Sendable (inout SaleDefinition) -> Void])
    func invalidSale(change: @Sendable (inout SaleDefinition) -> Void) {
        var sale = Self.valid
        change(&sale)
        let error = #expect(throws: ReservationError.self) { try sale.validate() }
        #expect(error?.code == .invalidRequest)
    }

    // Before the start: not started with a rounded-up Retry-After; after the end: ended; closed sold out: sold out.
    @Test func admission() {
        let window = SaleWindow(definition: Self.valid)
        #expect(window.admission(nowMilliseconds: 0, status: .scheduled, closedReason: nil) == .notStarted(retryAfterSeconds: 1))
        #expect(window.admission(nowMilliseconds: 1_000, status: .open, closedReason: nil) == .open)
        #expect(window.admission(nowMilliseconds: 61_000, status: .open, closedReason: nil) == .ended)
        #expect(window.admission(nowMilliseconds: 5_000, status: .closed, closedReason: .soldOut) == .soldOut)
        #expect(window.status(nowMilliseconds: 500, ledgerStatus: .scheduled) == .scheduled)
        #expect(window.status(nowMilliseconds: 61_000, ledgerStatus: .open) == .closed)
    }
}
