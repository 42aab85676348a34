import Logging

/// One ``GroupCommitter`` per master of the ledger: on a single primary one lane, on Redis Cluster one per
/// seed node, so commits of sales on different masters are sent in parallel instead of one after the other
/// on a single thread, and a master that stalls (a long `fsync`, a pause, a partition until the cluster fails
/// it over) holds up the sales of its own lane only. The engine keeps two sets: commits with the lease
/// operations ordered with them, and the control calls (renewals, reads, summaries).
///
/// A sale always uses the same lane (its slot's share of the key space: with the slots split evenly at
/// creation, lane *i* serves the sales of master *i*), so its commits and its lease operations stay ordered
/// exactly as on one committer. After a reshard a lane may serve sales of two masters: still correct, the
/// routing connection of every lane reaches every master.
public final class CommitLanes: Sendable {
    private let lanes: [GroupCommitter]

    public init(redis: RedisConfiguration, owner: String, configuration: GroupCommitter.Configuration, logger: Logger,
                observer: (any CommitObserver)? = nil, threadName: String) {
        let count = min(max(redis.clusterNodes.count, 1), Self.maxLanes)
        lanes = (0..<count).map { index in
            GroupCommitter(redis: redis, owner: owner, configuration: configuration, logger: logger, observer: observer,
                           threadName: count == 1 ? threadName : "\(threadName)-\(index)")
        }
    }

    public var count: Int { lanes.count }

    /// The lane of a sale: its slot's share of the key space.
    func lane(of saleID: String) -> GroupCommitter {
        lane(ofSlot: ClusterSlots.slot(of: LedgerKeys(saleID: saleID).meta))
    }

    /// The lane of the registries that span sales (one slot of their own: ``LedgerKeys/registries``).
    var registryLane: GroupCommitter { lane(ofSlot: ClusterSlots.slot(of: LedgerKeys.activeSales)) }

    func lane(ofSlot slot: Int) -> GroupCommitter { lanes[laneIndex(ofSlot: slot)] }

    func laneIndex(ofSlot slot: Int) -> Int {
        let index = slot * lanes.count / ClusterSlots.count
        assert(index >= 0 && index < lanes.count, "a slot maps to a lane")
        return index
    }

    /// The sales grouped by lane (its index), each group in the order given: what one lane's thread serves one
    /// after the other while the other lanes go on (a master that stalls holds up only the sales of its own lane).
    func byLane<Sale>(_ sales: [Sale], saleID: (Sale) -> String) -> [(lane: Int, sales: [Sale])] {
        var groups: [Int: [Sale]] = [:]
        for sale in sales { groups[laneIndex(ofSlot: ClusterSlots.slot(of: LedgerKeys(saleID: saleID(sale)).meta)), default: []].append(sale) }
        assert(groups.count <= lanes.count, "at most one group per lane")
        return groups.keys.sorted().map { ($0, groups[$0]!) }
    }

    /// Not a lane's index: the work on the registries, in the engine's reconcile ticks.
    static let registriesLane = -1
    /// At most this many lanes (seed nodes beyond it share lanes).
    static let maxLanes = 16

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

    /// Runs `body` on the registries' lane (work that spans sales: the registries, the sales' list).
    public func performOnRegistries<Value: Sendable>(
        _ body: @escaping @Sendable (Ledger) throws(RedisError) -> Value
    ) async throws(RedisError) -> Value {
        try await registryLane.perform(body)
    }

    /// Finishes every lane's queue, then stops their threads.
    public func shutdown() {
        for lane in lanes { lane.shutdown() }
    }
}
