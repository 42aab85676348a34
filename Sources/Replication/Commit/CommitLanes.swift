import Logging

/// One ``GroupCommitter`` per master of the ledger: on a single primary one lane, on Redis Cluster one per
/// seed node, so commits of sales on different masters are sent in parallel instead of one after the other
/// on a single thread.
///
/// A sale always uses the same lane (its slot's share of the key space: with the slots split evenly at
/// creation, lane *i* serves the sales of master *i*), so its commits and its lease operations stay ordered
/// exactly as on one committer. After a reshard a lane may serve sales of two masters: still correct, the
/// routing connection of every lane reaches every master.
public final class CommitLanes: Sendable {
    private let lanes: [GroupCommitter]

    public init(redis: RedisConfiguration, owner: String, configuration: GroupCommitter.Configuration, logger: Logger,
                observer: (any CommitObserver)? = nil, threadName: String) {
        let count = min(max(redis.clusterNodes.count, 1), 16)
        lanes = (0..<count).map { index in
            GroupCommitter(redis: redis, owner: owner, configuration: configuration, logger: logger, observer: observer,
                           threadName: count == 1 ? threadName : "\(threadName)-\(index)")
        }
    }

    public var count: Int { lanes.count }

    /// The lane of a sale: its slot's share of the key space.
    func lane(of saleID: String) -> GroupCommitter {
        guard lanes.count > 1 else { return lanes[0] }
        let index = ClusterSlots.slot(of: LedgerKeys(saleID: saleID).meta) * lanes.count / ClusterSlots.count
        assert(index >= 0 && index < lanes.count, "a slot maps to a lane")
        return lanes[index]
    }

    /// Any lane, for work that belongs to no sale.
    var first: GroupCommitter { lanes[0] }

    public var statistics: GroupCommitter.Statistics {
        lanes.reduce(GroupCommitter.Statistics(batches: 0, orders: 0, retries: 0)) { total, lane in
            let own = lane.statistics
            return GroupCommitter.Statistics(batches: total.batches + own.batches, orders: total.orders + own.orders,
                                             retries: total.retries + own.retries)
        }
    }

    public var queuedCount: Int { lanes.reduce(0) { $0 + $1.queuedCount } }

    public func commit(saleID: String, _ commit: PendingCommit) async -> CommitOutcome {
        await lane(of: saleID).commit(saleID: saleID, commit)
    }

    /// Runs `body` on the sale's lane, after every commit of that lane queued before it.
    public func perform<Value: Sendable>(
        saleID: String, _ body: @escaping @Sendable (Ledger) throws(RedisError) -> Value
    ) async throws(RedisError) -> Value {
        try await lane(of: saleID).perform(body)
    }

    /// Finishes every lane's queue, then stops their threads.
    public func shutdown() {
        for lane in lanes { lane.shutdown() }
    }
}
