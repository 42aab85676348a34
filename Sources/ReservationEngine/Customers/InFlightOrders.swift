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
            return entries.values.withSingleElement(at: index) { entry -> Start in
                if !key.isEmpty, entry.keyIndex(key) != nil { return .follow }
                guard entry.units + quantity <= limit else { return .overLimit }
                entry.units += quantity
                if !key.isEmpty { entry.keys.append((key, [])) }
                return .lead
            }
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
            return entries.values.withSingleElement(at: index) { entry -> Bool in
                guard let keyIndex = entry.keyIndex(key) else { return false }
                entry.keys[keyIndex].followers.append(follower)
                return true
            }
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
            let (followers, empty) = entries.values.withSingleElement(at: index) { entry -> ([Follower], Bool) in
                precondition(entry.units >= quantity, "released more in-flight units than reserved for a customer")
                entry.units -= quantity
                var followers: [Follower] = []
                if !key.isEmpty {
                    guard let keyIndex = entry.keyIndex(key) else { preconditionFailure("finished a key this request did not lead") }
                    followers = entry.keys.remove(at: keyIndex).followers
                }
                return (followers, entry.units == 0 && entry.keys.isEmpty)
            }
            if empty { entries.remove(at: index) }
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
        customer.customerID.withUTF8Bytes { hasher.combine(bytes: $0) }
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
    }
}

/// A customer of a sale, hashed and compared as the bytes of both ids.
@usableFromInline
struct SaleCustomer: Hashable, Sendable {
    @usableFromInline let saleID: String
    @usableFromInline let customerID: String

    @inlinable
    init(saleID: String, customerID: String) {
        self.saleID = saleID
        self.customerID = customerID
    }

    @inlinable
    static func == (lhs: SaleCustomer, rhs: SaleCustomer) -> Bool {
        CustomerKey.same(lhs.customerID, rhs.customerID) && CustomerKey.same(lhs.saleID, rhs.saleID)
    }

    @inlinable
    func hash(into hasher: inout Hasher) {
        customerID.withUTF8Bytes { hasher.combine(bytes: $0) }
        hasher.combine(customerID.utf8.count)
        saleID.withUTF8Bytes { hasher.combine(bytes: $0) }
    }
}

extension String {
    /// The string's UTF-8 bytes, without copying a native string.
    @inlinable
    func withUTF8Bytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        if let result = utf8.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return result }
        var copy = self
        return copy.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }
}

extension Dictionary.Values {
    /// Mutates the value at `index` in place (one look-up for a read and a write).
    @inlinable
    mutating func withSingleElement<Result>(at index: Dictionary.Index, _ body: (inout Value) -> Result) -> Result {
        body(&self[index])
    }
}
