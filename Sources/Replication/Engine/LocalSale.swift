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
        /// The first waiting customer is not due before this wall-clock time (the fleet order delay): ask
        /// again then.
        case notDueBefore(microseconds: Int64)
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
        /// When the request that fetched `view` was sent (monotonic ms), and whether a refresh is in flight.
        var viewFetchedAtMilliseconds: Int64 = .min / 2
        var viewRefreshing = false
        /// The admission pump while customers are parked (awaited at shutdown).
        var admissionPump: Task<Void, Never>?
    }

    let definition: SaleDefinition
    /// Reservations waiting for units, in arrival order; a take while it is idle happens under its lock.
    let admission: Mutex<AdmissionQueue<ParkedReservation>>
    /// The open buckets, read on every reservation (a short lock to copy references, then CAS on a bucket).
    private let openBuckets = Mutex<[TokenBucket]>([])
    let state = Mutex(State())

    init(definition: SaleDefinition, admissionQueueCapacity: Int, recordAdmissionOrder: Bool = false) {
        self.definition = definition
        self.admission = Mutex(AdmissionQueue(capacity: admissionQueueCapacity, recordingGrants: recordAdmissionOrder))
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

    /// Keeps `view` if it is the newest seen; `fetchedAtMilliseconds` is when its request was sent (monotonic).
    func update(view: LedgerView, fetchedAtMilliseconds: Int64) {
        state.withLock { state in
            // Views arrive from different calls; keep the newest by ledger time.
            if let current = state.view, current.ledgerNowMilliseconds > view.ledgerNowMilliseconds { return }
            state.view = view
            state.viewFetchedAtMilliseconds = max(state.viewFetchedAtMilliseconds, fetchedAtMilliseconds)
        }
    }

    /// Claims the refresh of a view older than `maximumAgeMilliseconds` (one refresh at a time): true when
    /// the caller must fetch it and then call ``finishViewRefresh()``.
    func claimViewRefresh(nowMilliseconds: Int64, maximumAgeMilliseconds: Int64) -> Bool {
        state.withLock { state in
            guard !state.viewRefreshing, nowMilliseconds - state.viewFetchedAtMilliseconds >= maximumAgeMilliseconds else { return false }
            state.viewRefreshing = true
            return true
        }
    }

    func finishViewRefresh() {
        state.withLock { $0.viewRefreshing = false }
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
