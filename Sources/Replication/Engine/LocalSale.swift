import ReservationEngine
import Synchronization

/// One sale as this instance holds it: its leases (state machine + bucket each), the last global view,
/// and the single-flight refill. `Sendable`: all mutable state is inside mutexes; buckets are atomic.
final class LocalSale: Sendable {
    struct Slot: Sendable {
        var machine: LeaseStateMachine
        var bucket: TokenBucket?
        var takenAtLastTick: Int
        /// The lease's remaining units in the ledger at the last renewal (in-flight commits included).
        var ledgerRemaining: Int
    }

    enum RefillResult: Sendable, Hashable {
        case granted
        case empty
        case closed(ClosedReason)
        case notStarted(millisecondsUntilStart: Int64)
        case notFound
        case unavailable(RedisError)
        /// Another refill finished meanwhile: try the buckets again.
        case retry
    }

    struct AbandonedLease: Sendable, Hashable {
        var shardID: String
        var fence: Int64
        var attemptsLeft: Int
    }

    struct State: Sendable {
        var slots: [String: Slot] = [:]
        var view: LedgerView?
        var refillWaiters: [CheckedContinuation<RefillResult, Never>]?
        var lastGrantUnits = 0
        /// The last entry of the served-waiters stream this instance has announced.
        var lastServedID: String?
        /// Closed and its final summary stored: nothing is left to reconcile.
        var settled = false
        /// When the sale settled (monotonic ms): the process forgets it a while later.
        var settledAtMilliseconds: Int64?
        /// Leases given up after a commit with an unknown outcome, to return through the committer (after
        /// that commit). Never renewed; each return is tried a bounded number of times, after which the
        /// lease expires in the ledger by itself and its units are reclaimed into the pool.
        var abandoned: [AbandonedLease] = []
    }

    let definition: SaleDefinition
    /// The open buckets, read on every reservation (a short lock to copy references, then CAS on a bucket).
    private let openBuckets = Mutex<[TokenBucket]>([])
    let state = Mutex(State())

    init(definition: SaleDefinition) {
        self.definition = definition
    }

    /// Takes `quantity` units from the first bucket that has them.
    func take(_ quantity: Int) -> TokenBucket? {
        let buckets = openBuckets.withLock { $0 }
        for bucket in buckets where bucket.take(quantity) { return bucket }
        return nil
    }

    /// Units each open bucket can still sell, by shard id.
    var sellableUnits: [String: Int] {
        openBuckets.withLock { buckets in
            Dictionary(buckets.map { ($0.shardID, $0.available) }, uniquingKeysWith: +)
        }
    }

    var availableLocally: Int {
        openBuckets.withLock { $0.reduce(0) { $0 + $1.available } }
    }

    func publish(_ bucket: TokenBucket) {
        openBuckets.withLock { $0.append(bucket) }
    }

    func unpublish(_ bucket: TokenBucket) {
        openBuckets.withLock { buckets in buckets.removeAll { $0 === bucket } }
    }

    var view: LedgerView? { state.withLock { $0.view } }

    func update(view: LedgerView) {
        state.withLock { state in
            // Views arrive from different calls; keep the newest by ledger time.
            if let current = state.view, current.ledgerNowMilliseconds > view.ledgerNowMilliseconds { return }
            state.view = view
        }
    }

    /// Closes every bucket (the sale closed, or the instance stops); returns the untaken units per lease.
    func closeAllBuckets() -> [(shardID: String, fence: Int64, units: Int)] {
        let buckets = openBuckets.withLock { buckets in
            defer { buckets.removeAll() }
            return buckets
        }
        return buckets.map { ($0.shardID, $0.fence, $0.close()) }
    }
}
