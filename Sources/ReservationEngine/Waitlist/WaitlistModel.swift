/// The waiting list's serving rule, as a value. The ledger's Lua scripts apply the same rule atomically
/// in Redis; this model states it in Swift, and its unit tests pin the tail cases.
///
/// Rule: units freed by expired or returned leases, cancellations or compensation go to the waitlist head
/// first, in arrival order. The head is served when the pool holds its quantity. A head that can never be
/// served (its quantity exceeds everything still unsold, or the customer reached the limit meanwhile) is
/// removed as unserved so it does not block the customers behind it. Otherwise serving stops at the head:
/// a later, smaller request never overtakes an earlier one.
public struct WaitlistModel: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        public let customerID: String
        public let quantity: Int
        public init(customerID: String, quantity: Int) {
            precondition(quantity > 0)
            self.customerID = customerID
            self.quantity = quantity
        }
    }

    public enum Outcome: Sendable, Hashable {
        case served(Entry)
        case unserved(Entry, ReservationError.Code)
    }

    /// Bound on entries settled by one `serve` call (the ledger script uses the same bound).
    public static let maxSettledPerCall = 1_000

    public private(set) var entries: [Entry] = []

    public init() {}

    public var count: Int { entries.count }

    /// Appends a customer (one entry per customer); returns the 1-based position.
    public mutating func join(_ entry: Entry) -> Int {
        if let index = entries.firstIndex(where: { CustomerKey.same($0.customerID, entry.customerID) }) { return index + 1 }
        entries.append(entry)
        return entries.count
    }

    public func position(of customerID: String) -> Int? {
        entries.firstIndex { CustomerKey.same($0.customerID, customerID) }.map { $0 + 1 }
    }

    /// Serves from `pool` units. `unsold` is `stock - sold` (units in pool and leases included);
    /// `purchased(customer)` is the customer's confirmed units; `limit` the per-customer limit.
    /// Returns the outcomes in order and the units left in the pool.
    public mutating func serve(pool: Int, unsold: Int, limit: Int, purchased: (String) -> Int) -> (outcomes: [Outcome], pool: Int) {
        precondition(pool >= 0 && unsold >= pool, "the pool is part of the unsold units")
        var pool = pool
        var unsold = unsold
        var outcomes: [Outcome] = []
        var boughtNow: [String: Int] = [:]
        while let head = entries.first, outcomes.count < Self.maxSettledPerCall {
            let already = purchased(head.customerID) + boughtNow[head.customerID, default: 0]
            if already + head.quantity > limit {
                outcomes.append(.unserved(head, .limitExceeded))
            } else if head.quantity > unsold {
                outcomes.append(.unserved(head, unsold == 0 ? .soldOut : .insufficientStock))
            } else if head.quantity <= pool {
                pool -= head.quantity
                unsold -= head.quantity
                boughtNow[head.customerID, default: 0] += head.quantity
                outcomes.append(.served(head))
            } else {
                break
            }
            entries.removeFirst()
        }
        assert(pool >= 0 && unsold >= pool)
        return (outcomes, pool)
    }

    /// At close every entry still waiting is unserved.
    public mutating func closeAll() -> [Entry] {
        defer { entries.removeAll() }
        return entries
    }
}
