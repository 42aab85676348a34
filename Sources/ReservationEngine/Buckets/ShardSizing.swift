/// How many units one lease takes from the pool: `clamp(pool / (k * instances), 1, maxShard)`.
///
/// Large while the pool is full (few ledger round trips), small at the tail of the sale (little stock
/// stranded in one instance while others have customers waiting).
public struct ShardSizing: Sendable, Hashable {
    /// Spread factor: each active instance may hold about `1/k` of the pool.
    public var spreadFactor: Int
    public var maxShardUnits: Int

    public init(spreadFactor: Int = 4, maxShardUnits: Int = 256) {
        precondition(spreadFactor >= 1 && maxShardUnits >= 1)
        self.spreadFactor = spreadFactor
        self.maxShardUnits = maxShardUnits
    }

    public func units(pool: Int, activeInstances: Int) -> Int {
        precondition(pool >= 0 && activeInstances >= 1)
        guard pool > 0 else { return 0 }
        let share = pool / (spreadFactor * activeInstances)
        return min(pool, max(1, min(share, maxShardUnits)))
    }
}
