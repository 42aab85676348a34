import Logging

/// One ``GroupCommitter`` per master of the ledger: on a single primary one lane, on Redis Cluster one per
/// master, so commits of sales on different masters are sent in parallel instead of one after the other
/// on a single thread, and a master that stalls (a long `fsync`, a pause, a partition until the cluster fails
/// it over) holds up the sales of its own lane only. The engine keeps two sets: commits with the lease
/// operations ordered with them, and the control calls (renewals, reads, summaries).
///
/// A sale always uses the same lane (its slot's lane in the ``LaneLayout`` read at start: the master that owned
/// the slot then), so its commits and its lease operations stay ordered exactly as on one committer. A failover
/// keeps the layout right (the promoted replica takes its master's slots); after a reshard a lane may serve sales
/// of two masters: still correct, the routing connection of every lane reaches every master.
public final class CommitLanes: Sendable {
    private let lanes: [GroupCommitter]
    public let layout: LaneLayout

    public init(redis: RedisConfiguration, layout: LaneLayout, owner: String, configuration: GroupCommitter.Configuration,
                logger: Logger, observer: (any CommitObserver)? = nil, threadName: String) {
        self.layout = layout
        let count = layout.count
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
        let index = layout.lane(ofSlot: slot)
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
    /// At most this many lanes (masters beyond it share lanes).
    public static let maxLanes = LaneLayout.maxLanes

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

/// Which lane serves each of the 16,384 slots. On Redis Cluster it follows the slot map read when the instance
/// starts: one lane per master (at most ``maxLanes``; masters beyond it share), the masters in the order of their
/// first slot, so that no lane serves two masters' slots and a master that stalls holds up only its own sales. The
/// seed list may name replicas and spare nodes too (the Kubernetes component lists every pod): they get no lane.
/// When no seed answers at start, the slots are split evenly over one lane per seed, at most ``maxLanes``. The
/// layout never changes while the instance runs: a sale's lane is fixed, which keeps its commits ordered with its
/// lease operations (see ``CommitLanes``).
public struct LaneLayout: Sendable, Equatable {
    /// At most this many lanes: each is a thread and a connection per master it reaches, in each of the two sets.
    public static let maxLanes = 16

    public let count: Int
    /// The lane of each slot.
    private let lanes: [UInt8]
    /// How the layout was made, for the start's log line.
    public let origin: String

    /// The slots split evenly over `count` lanes (slot *s* on lane `s * count / 16384`).
    public static func even(_ count: Int) -> LaneLayout {
        precondition((1...maxLanes).contains(count), "1 to \(maxLanes) lanes")
        return LaneLayout(count: count, lanes: (0..<ClusterSlots.count).map { UInt8($0 * count / ClusterSlots.count) },
                          origin: count == 1 ? "one lane" : "\(count) lanes over the key space")
    }

    /// One lane per master of a slot map (`owners`: each slot's master as an index, -1 for a slot nobody serves,
    /// which keeps its even-split lane).
    init(owners: [Int16]) {
        precondition(owners.count == ClusterSlots.count, "a slot map has an owner entry per slot")
        var rank: [Int16: Int] = [:]
        for owner in owners where owner >= 0 && rank[owner] == nil { rank[owner] = rank.count }
        let count = min(max(rank.count, 1), Self.maxLanes)
        var lanes = [UInt8](repeating: 0, count: ClusterSlots.count)
        for slot in 0..<ClusterSlots.count {
            let owner = owners[slot]
            lanes[slot] = UInt8(owner >= 0 ? rank[owner]! % count : slot * count / ClusterSlots.count)
        }
        self.init(count: count, lanes: lanes, origin: "\(count) lanes, one per master of the slot map (\(rank.count) masters)")
    }

    private init(count: Int, lanes: [UInt8], origin: String) {
        assert(lanes.count == ClusterSlots.count && lanes.allSatisfy { Int($0) < count }, "every slot has one of the lanes")
        self.count = count
        self.lanes = lanes
        self.origin = origin
    }

    public func lane(ofSlot slot: Int) -> Int { Int(lanes[slot]) }

    /// The layout for a ledger: one lane on a single primary (or behind Sentinels); on Redis Cluster, the masters
    /// of the slot map the seeds give now (each seed asked at most once, with a connect and command timeout of at
    /// most 1 s), else one lane per seed over the key space.
    public static func forLedger(_ redis: RedisConfiguration, logger: Logger) -> LaneLayout {
        guard !redis.clusterNodes.isEmpty else { return .even(1) }
        var quick = redis
        quick.connectTimeoutMilliseconds = min(redis.connectTimeoutMilliseconds, 1_000)
        quick.commandTimeoutMilliseconds = min(redis.commandTimeoutMilliseconds, 1_000)
        do throws(RedisError) {
            let router = try ClusterRouter(configuration: quick)
            defer { router.close() }
            try router.readMap()
            let layout = LaneLayout(owners: router.slotOwners)
            logger.info("ledger lanes follow the slot map", metadata: ["lanes": "\(layout.count)", "layout": "\(layout.origin)"])
            return layout
        } catch {
            let layout = LaneLayout.even(min(redis.clusterNodes.count, maxLanes))
            logger.warning("the slot map could not be read at start: the lanes split the key space by seed", metadata: [
                "lanes": "\(layout.count)", "error": "\(error.message)",
            ])
            return layout
        }
    }
}
