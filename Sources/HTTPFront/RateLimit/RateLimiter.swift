import ReservationEngine
import Synchronization

/// Token buckets per key (customer or client address): `rate` requests per second, bursts of twice that.
///
/// Sharded mutexes keep it off one hot lock. Memory is bounded: a shard over `maxKeysPerShard` keys drops
/// the keys whose buckets refilled completely (idle callers), which changes nothing for them.
public final class RateLimiter: Sendable {
    private static let shardCount = 32
    public static let maxKeysPerShard = 16_384

    private struct Bucket {
        var tokens: Double
        var updatedAtNanoseconds: UInt64
    }

    private final class Shard: Sendable {
        let buckets = Mutex<[CustomerKey: Bucket]>([:])
    }

    /// Requests per second; 0 disables the limiter.
    public let ratePerSecond: Double
    public let burst: Double
    private let shards: [Shard]

    public init(ratePerSecond: Double) {
        precondition(ratePerSecond >= 0)
        self.ratePerSecond = ratePerSecond
        burst = ratePerSecond * 2
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    public var isEnabled: Bool { ratePerSecond > 0 }

    /// Takes one token for `key`; nil when allowed, otherwise the seconds to wait.
    public func acquire(_ key: String, nowNanoseconds: UInt64 = RateLimiter.monotonicNanoseconds()) -> Int? {
        guard isEnabled else { return nil }
        var hasher = Hasher()
        hasher.combine(CustomerKey(key))
        let shard = shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
        return shard.buckets.withLock { buckets -> Int? in
            var bucket = buckets[CustomerKey(key)] ?? Bucket(tokens: burst, updatedAtNanoseconds: nowNanoseconds)
            let elapsed = Double(nowNanoseconds &- bucket.updatedAtNanoseconds) / 1e9
            bucket.tokens = min(burst, bucket.tokens + max(0, elapsed) * ratePerSecond)
            bucket.updatedAtNanoseconds = nowNanoseconds
            let result: Int?
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                result = nil
            } else {
                result = max(1, Int(((1 - bucket.tokens) / ratePerSecond).rounded(.up)))
            }
            buckets[CustomerKey(key)] = bucket
            if buckets.count > Self.maxKeysPerShard {
                let burst = self.burst
                let rate = ratePerSecond
                buckets = buckets.filter { _, other in
                    other.tokens + Double(nowNanoseconds &- other.updatedAtNanoseconds) / 1e9 * rate < burst
                }
            }
            return result
        }
    }

    /// Nanoseconds on a monotonic clock since the first call in this process.
    public static func monotonicNanoseconds() -> UInt64 {
        // The origin is read first: on the first call it is initialized now, and must not be later than `now`.
        let origin = clockOrigin
        let (seconds, attoseconds) = (ContinuousClock.now - origin).components
        assert(seconds >= 0 && attoseconds >= 0, "a monotonic clock does not go back")
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }
    private static let clockOrigin = ContinuousClock.now
}
