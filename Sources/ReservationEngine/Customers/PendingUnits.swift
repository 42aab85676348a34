import Synchronization

/// Units of each customer that this instance has taken from a bucket but not yet committed.
///
/// The exact per-customer limit is enforced by the ledger's commit script; this local view only refuses
/// a request that cannot succeed anyway (a customer's concurrent requests on this instance already hold
/// the limit), so such requests never take units from a bucket. Sharded mutexes keep it off one hot lock.
public final class PendingUnits: Sendable {
    private static let shardCount = 64
    private final class Shard: Sendable {
        let units = Mutex<[CustomerKey: Int]>([:])
    }

    private let shards: [Shard]

    public init() {
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    /// Adds `quantity` to the customer's pending units if `pending + quantity <= limit`.
    public func reserve(customerID: String, quantity: Int, limit: Int) -> Bool {
        precondition(quantity > 0 && limit > 0)
        return shard(customerID).units.withLock { pending in
            let current = pending[CustomerKey(customerID), default: 0]
            guard current + quantity <= limit else { return false }
            pending[CustomerKey(customerID)] = current + quantity
            return true
        }
    }

    /// Removes units once their commit answered (whatever the answer).
    public func release(customerID: String, quantity: Int) {
        precondition(quantity > 0)
        shard(customerID).units.withLock { pending in
            let current = pending[CustomerKey(customerID), default: 0]
            precondition(current >= quantity, "released more pending units than reserved for a customer")
            pending[CustomerKey(customerID)] = current == quantity ? nil : current - quantity
        }
    }

    public func pending(customerID: String) -> Int {
        shard(customerID).units.withLock { $0[CustomerKey(customerID), default: 0] }
    }

    private func shard(_ customerID: String) -> Shard {
        var hasher = Hasher()
        hasher.combine(CustomerKey(customerID))
        let index = Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))
        return shards[index]
    }
}
