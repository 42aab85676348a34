import Synchronization

/// The units of one leased shard, held in this process.
///
/// `take` is one compare-and-swap on one atomic word: no lock, no Redis call. Closing swaps the count for
/// a negative marker in the same word, so a take racing with a close either wins its units before the
/// close (and the close does not return them) or fails; no unit is ever both taken and returned.
public final class TokenBucket: Sendable {
    /// Any negative value means closed; `take` compares `available >= quantity`, which fails on it.
    private static let closedMarker = Int.min / 2
    /// Bound on compare-and-swap retries; each failed attempt means another thread made progress.
    public static let maxTakeAttempts = 1_024

    public let shardID: String
    public let fence: Int64
    public let capacity: Int
    private let units: Atomic<Int>

    public init(shardID: String, fence: Int64, units: Int) {
        precondition(units > 0, "a bucket starts with at least one unit")
        precondition(fence > 0, "fences start at 1")
        self.shardID = shardID
        self.fence = fence
        self.capacity = units
        self.units = Atomic(units)
    }

    /// Units still available here; 0 when closed.
    public var available: Int { max(0, units.load(ordering: .relaxed)) }

    public var isClosed: Bool { units.load(ordering: .relaxed) < 0 }

    /// Takes `quantity` units if that many are available.
    public func take(_ quantity: Int) -> Bool {
        precondition(quantity > 0, "take at least one unit")
        var current = units.load(ordering: .relaxed)
        for _ in 0..<Self.maxTakeAttempts {
            guard current >= quantity else { return false }
            let (exchanged, original) = units.compareExchange(
                expected: current, desired: current - quantity,
                successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed
            )
            if exchanged {
                assert(original - quantity >= 0 && original <= capacity)
                return true
            }
            current = original
        }
        return false
    }

    /// Gives back units a commit did not use (limit reached, duplicate). Fails when the bucket is closed:
    /// the units then stay with the lease in the ledger and return to the pool with it.
    @discardableResult
    public func putBack(_ quantity: Int) -> Bool {
        precondition(quantity > 0, "put back at least one unit")
        var current = units.load(ordering: .relaxed)
        for _ in 0..<Self.maxTakeAttempts {
            guard current >= 0 else { return false }
            precondition(current + quantity <= capacity, "put back more units than were taken from bucket \(shardID)")
            let (exchanged, original) = units.compareExchange(
                expected: current, desired: current + quantity,
                successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed
            )
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Closes the bucket and returns the units nobody took. A second close returns 0.
    public func close() -> Int {
        let previous = units.exchange(Self.closedMarker, ordering: .acquiringAndReleasing)
        guard previous >= 0 else { return 0 }
        assert(previous <= capacity)
        return previous
    }
}
