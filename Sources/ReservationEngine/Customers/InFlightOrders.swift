import Synchronization

/// What this instance has in flight for each customer of each sale: the units taken from a bucket and not
/// yet answered by the ledger, and the idempotency keys whose first request is still being handled, each
/// with the requests that came meanwhile with the same key and wait for its outcome (`Follower`s).
///
/// The exact per-customer limit is enforced by the ledger's commit script; the units here only refuse a
/// request that cannot succeed anyway (the customer's concurrent requests on this instance already hold
/// the limit), so such a request never takes units from a bucket. Entries are per sale: a customer's
/// orders in one sale never count against their limit in another.
///
/// A request costs one lock and one dictionary look-up when it starts and the same when it finishes.
/// Sharded mutexes keep it off one hot lock. Customer ids and keys are compared as bytes (see CustomerKey).
public final class InFlightOrders<Follower: Sendable>: Sendable {
    /// What ``start(saleID:customerID:key:quantity:limit:)`` decided.
    public enum Start: Sendable, Equatable {
        /// Units reserved; with a key, this request leads it: call ``finish(saleID:customerID:key:quantity:)``.
        case lead
        /// The key's first request is in flight: nothing was reserved; wait for its outcome (``follow``).
        case follow
        /// The customer's in-flight units leave no room for `quantity`: nothing was reserved.
        case overLimit
    }

    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var units: Int
        /// Keys led by requests in flight, each with its followers (a customer rarely has more than one).
        @usableFromInline var keys: [(key: String, followers: [Follower])]

        @inlinable
        init(units: Int) {
            self.units = units
            self.keys = []
        }

        @inlinable
        func keyIndex(_ key: String) -> Int? {
            keys.firstIndex { CustomerKey.same($0.key, key) }
        }
    }

    @usableFromInline
    final class Shard: Sendable {
        @usableFromInline let entries = Mutex<[SaleCustomer: Entry]>([:])
        @usableFromInline init() {}
    }

    @usableFromInline static var shardCount: Int { 64 }
    @usableFromInline let shards: [Shard]

    public init() {
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    /// Starts a request. A keyed request whose key is in flight follows it; otherwise `quantity` units are
    /// reserved when the customer's in-flight units leave room for them, and a keyed request leads its key.
    /// `key` empty: no idempotency key.
    @inlinable
    public func start(saleID: String, customerID: String, key: String, quantity: Int, limit: Int) -> Start {
        precondition(quantity > 0 && quantity <= limit, "a quantity within the limit (checked before)")
        let customer = SaleCustomer(saleID: saleID, customerID: customerID)
        return shard(customer).entries.withLock { entries -> Start in
            guard let index = entries.index(forKey: customer) else {
                var entry = Entry(units: quantity)
                if !key.isEmpty { entry.keys.append((key, [])) }
                entries[customer] = entry
                return .lead
            }
            if !key.isEmpty, entries.values[index].keyIndex(key) != nil { return .follow }
            guard entries.values[index].units + quantity <= limit else { return .overLimit }
            entries.values[index].units += quantity
            if !key.isEmpty { entries.values[index].keys.append((key, [])) }
            return .lead
        }
    }

    /// Registers `follower` with the request leading `key`; false when that request finished meanwhile
    /// (the ledger knows the key's outcome by then).
    @inlinable
    public func follow(saleID: String, customerID: String, key: String, _ follower: Follower) -> Bool {
        precondition(!key.isEmpty, "only a keyed request follows")
        let customer = SaleCustomer(saleID: saleID, customerID: customerID)
        return shard(customer).entries.withLock { entries -> Bool in
            guard let index = entries.index(forKey: customer) else { return false }
            guard let keyIndex = entries.values[index].keyIndex(key) else { return false }
            entries.values[index].keys[keyIndex].followers.append(follower)
            return true
        }
    }

    /// Ends a request that started with ``Start/lead``: its units are released and its key (if any) is free
    /// on this instance. Returns the key's followers, to be told the outcome.
    @inlinable
    public func finish(saleID: String, customerID: String, key: String, quantity: Int) -> [Follower] {
        let customer = SaleCustomer(saleID: saleID, customerID: customerID)
        return shard(customer).entries.withLock { entries -> [Follower] in
            guard let index = entries.index(forKey: customer) else {
                preconditionFailure("finished a request that never started")
            }
            precondition(entries.values[index].units >= quantity, "released more in-flight units than reserved for a customer")
            entries.values[index].units -= quantity
            var followers: [Follower] = []
            if !key.isEmpty {
                guard let keyIndex = entries.values[index].keyIndex(key) else { preconditionFailure("finished a key this request did not lead") }
                followers = entries.values[index].keys.remove(at: keyIndex).followers
            }
            if entries.values[index].units == 0, entries.values[index].keys.isEmpty { entries.remove(at: index) }
            return followers
        }
    }

    /// The customer's units in flight in the sale.
    public func pendingUnits(saleID: String, customerID: String) -> Int {
        let customer = SaleCustomer(saleID: saleID, customerID: customerID)
        return shard(customer).entries.withLock { $0[customer]?.units ?? 0 }
    }

    /// Customers with something in flight, across sales (for tests: zero once every request finished).
    public var count: Int {
        shards.reduce(0) { total, shard in total + shard.entries.withLock { $0.count } }
    }

    @inlinable
    func shard(_ customer: SaleCustomer) -> Shard {
        var hasher = Hasher()
        hasher.combine(customer.customer)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
    }
}

/// A customer of a sale, hashed and compared as the bytes of both ids (see CustomerKey).
@usableFromInline
struct SaleCustomer: Hashable, Sendable {
    @usableFromInline let sale: CustomerKey
    @usableFromInline let customer: CustomerKey

    @inlinable
    init(saleID: String, customerID: String) {
        sale = CustomerKey(saleID)
        customer = CustomerKey(customerID)
    }
}
