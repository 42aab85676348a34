/// The life of one lease as this instance sees it, as a value: events in, actions out, no I/O.
///
/// ```
/// requested --granted--> active --tick near deadline--> renewing --renewed--> active
///     |                    |  \                            |
///  denied            returnRequested  tick past deadline --+--> expiring --renewed--> returned (units given back)
///     v                    v                                       |
///  returned            returned                      lost (any live state) --> fenced
/// ```
///
/// Deadlines are on the instance's monotonic clock, computed conservatively: the grant's TTL counted from
/// the moment the request was *sent*, minus a safety margin, so the local deadline always falls before
/// the ledger's expiry (Redis time). A bucket is closed at the local deadline unless a renewal arrived.
public struct LeaseStateMachine: Sendable, Hashable {
    public struct Grant: Sendable, Hashable {
        public let shardID: String
        public let fence: Int64
        public let units: Int
        /// Monotonic milliseconds after which this instance must stop selling from the lease.
        public var deadlineMilliseconds: Int64

        public init(shardID: String, fence: Int64, units: Int, deadlineMilliseconds: Int64) {
            self.shardID = shardID
            self.fence = fence
            self.units = units
            self.deadlineMilliseconds = deadlineMilliseconds
        }
    }

    public enum State: Sendable, Hashable {
        case requested
        case active(Grant)
        case renewing(Grant)
        case expiring(Grant)
        case fenced
        case returned
    }

    public enum Action: Sendable, Hashable {
        case none
        /// Create the bucket with the granted units and start selling.
        case openBucket(Grant)
        /// Ask the ledger to extend the lease.
        case sendRenew(shardID: String, fence: Int64)
        /// Stop selling from the lease; the ledger may have given it to someone else.
        case closeBucket
        /// Stop selling and give the unsold units back to the pool.
        case closeBucketAndReturn(shardID: String, fence: Int64)
    }

    public private(set) var state: State = .requested
    /// Start renewing this long before the local deadline.
    public let renewMarginMilliseconds: Int64

    public init(renewMarginMilliseconds: Int64) {
        precondition(renewMarginMilliseconds >= 0)
        self.renewMarginMilliseconds = renewMarginMilliseconds
    }

    /// True while the bucket may sell.
    public var isSelling: Bool {
        switch state {
        case .active, .renewing: true
        default: false
        }
    }

    public mutating func granted(_ grant: Grant) -> Action {
        precondition(grant.units > 0 && grant.fence > 0, "a grant carries units and a fence")
        guard case .requested = state else {
            preconditionFailure("granted in state \(state)")
        }
        state = .active(grant)
        return .openBucket(grant)
    }

    /// The ledger had no unit to lease.
    public mutating func denied() {
        guard case .requested = state else { preconditionFailure("denied in state \(state)") }
        state = .returned
    }

    /// Called by the reconciler on every tick.
    public mutating func tick(nowMilliseconds: Int64) -> Action {
        switch state {
        case .active(let grant):
            if nowMilliseconds >= grant.deadlineMilliseconds {
                state = .expiring(grant)
                return .closeBucket
            }
            if nowMilliseconds >= grant.deadlineMilliseconds - renewMarginMilliseconds {
                state = .renewing(grant)
                return .sendRenew(shardID: grant.shardID, fence: grant.fence)
            }
            return .none
        case .renewing(let grant):
            if nowMilliseconds >= grant.deadlineMilliseconds {
                state = .expiring(grant)
                return .closeBucket
            }
            // A renewal is in flight or was lost with a connection: ask again.
            return .sendRenew(shardID: grant.shardID, fence: grant.fence)
        case .expiring(let grant):
            // Still unknown whether the ledger kept it: a renewal answers that (renewed -> returned, or lost).
            return .sendRenew(shardID: grant.shardID, fence: grant.fence)
        case .requested, .fenced, .returned:
            return .none
        }
    }

    /// The ledger extended the lease; `deadlineMilliseconds` is the new conservative local deadline.
    public mutating func renewed(deadlineMilliseconds: Int64) -> Action {
        switch state {
        case .active(var grant), .renewing(var grant):
            precondition(deadlineMilliseconds >= grant.deadlineMilliseconds, "a renewal never shortens a lease")
            grant.deadlineMilliseconds = deadlineMilliseconds
            state = .active(grant)
            return .none
        case .expiring(let grant):
            // The bucket is already closed; hand the rest back rather than reopening it.
            state = .returned
            return .closeBucketAndReturn(shardID: grant.shardID, fence: grant.fence)
        case .requested, .fenced, .returned:
            return .none
        }
    }

    /// The ledger no longer knows this lease with this fence (expired and reclaimed, or revoked).
    public mutating func lost() -> Action {
        switch state {
        case .active, .renewing, .expiring:
            state = .fenced
            return .closeBucket
        case .requested:
            state = .fenced
            return .none
        case .fenced, .returned:
            return .none
        }
    }

    /// This instance gives the lease back (surplus, rebalance, shutdown).
    public mutating func returnRequested() -> Action {
        switch state {
        case .active(let grant), .renewing(let grant), .expiring(let grant):
            state = .returned
            return .closeBucketAndReturn(shardID: grant.shardID, fence: grant.fence)
        case .requested, .fenced, .returned:
            return .none
        }
    }
}
