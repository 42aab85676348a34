import Foundation
import ReservationEngine
import Synchronization
import Testing

/// A counter tasks can share (an `Atomic` cannot be captured: it is not copyable).
final class SharedCounter: Sendable {
    private let value = Atomic(0)
    func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
    func store(_ amount: Int) { value.store(amount, ordering: .relaxed) }
    var current: Int { value.load(ordering: .relaxed) }
}

@Suite("TokenBucket")
struct TokenBucketTests {
    // Takes succeed while units last, fail beyond, and put-backs restore exactly what was taken.
    @Test func takeAndPutBack() {
        let bucket = TokenBucket(shardID: "s1", fence: 1, units: 5)
        #expect(bucket.take(2))
        #expect(bucket.take(3))
        #expect(!bucket.take(1))
        #expect(bucket.available == 0)
        #expect(bucket.putBack(2))
        #expect(bucket.available == 2)
        #expect(!bucket.take(3))
        #expect(bucket.take(2))
    }

    // A closed bucket refuses takes and put-backs; close returns the untaken units once.
    @Test func closeReturnsUntakenUnitsOnce() {
        let bucket = TokenBucket(shardID: "s1", fence: 7, units: 10)
        #expect(bucket.take(4))
        #expect(bucket.close() == 6)
        #expect(bucket.close() == 0)
        #expect(bucket.isClosed)
        #expect(!bucket.take(1))
        #expect(!bucket.putBack(1))
        #expect(bucket.available == 0)
    }

    // 8 threads hammer one bucket: exactly `capacity` units are taken, never more.
    @Test(arguments: [1, 1_000, 100_000])
    func concurrentTakesNeverOverdraw(capacity: Int) async {
        let bucket = TokenBucket(shardID: "s", fence: 1, units: capacity)
        let taken = SharedCounter()
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    let quantity = worker % 2 + 1
                    var attempts = 0
                    while attempts < capacity + 10 {
                        attempts += 1
                        if bucket.take(quantity) { taken.add(quantity) } else if bucket.available < quantity { break }
                    }
                }
            }
        }
        #expect(taken.current + bucket.available == capacity)
        #expect(bucket.available <= 1, "only a remainder smaller than the largest quantity can be left")
    }

    // A close racing with takes on other threads: taken + returned by close == capacity, nothing double.
    @Test func closeRacingWithTakes() async {
        for _ in 0..<50 {
            let bucket = TokenBucket(shardID: "s", fence: 1, units: 10_000)
            let taken = SharedCounter()
            let returned = SharedCounter()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        while bucket.take(1) { taken.add(1) }
                    }
                }
                group.addTask { returned.store(bucket.close()) }
            }
            #expect(taken.current + returned.current == 10_000)
        }
    }
}

@Suite("ShardSizing")
struct ShardSizingTests {
    // clamp(pool / (k * instances), 1, maxShard), never more than the pool.
    @Test(arguments: [
        (10_000, 1, 256), (10_000, 3, 256), (1_000, 3, 83), (100, 3, 8), (10, 3, 1), (1, 5, 1), (0, 1, 0), (3, 1, 1),
    ])
    func units(pool: Int, instances: Int, expected: Int) {
        #expect(ShardSizing(spreadFactor: 4, maxShardUnits: 256).units(pool: pool, activeInstances: instances) == expected)
    }
}

@Suite("InFlightOrders")
struct InFlightOrdersTests {
    // A customer's in-flight units never exceed the limit; finishing makes room again.
    @Test func boundsInFlightUnitsPerCustomer() {
        let inFlight = InFlightOrders<Int>()
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "", quantity: 2, limit: 2) == .lead)
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "", quantity: 1, limit: 2) == .overLimit)
        #expect(inFlight.start(saleID: "s", customerID: "bob", key: "", quantity: 1, limit: 2) == .lead)
        #expect(inFlight.finish(saleID: "s", customerID: "alice", key: "", quantity: 2).isEmpty)
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "", quantity: 1, limit: 2) == .lead)
        #expect(inFlight.pendingUnits(saleID: "s", customerID: "alice") == 1)
        #expect(inFlight.finish(saleID: "s", customerID: "alice", key: "", quantity: 1).isEmpty)
        #expect(inFlight.finish(saleID: "s", customerID: "bob", key: "", quantity: 1).isEmpty)
        #expect(inFlight.count == 0, "an entry with nothing in flight is dropped")
    }

    // A customer's units in flight in one sale leave their limit in another untouched.
    @Test func salesAreApart() {
        let inFlight = InFlightOrders<Int>()
        #expect(inFlight.start(saleID: "phones", customerID: "alice", key: "", quantity: 2, limit: 2) == .lead)
        #expect(inFlight.start(saleID: "phones", customerID: "alice", key: "", quantity: 1, limit: 2) == .overLimit)
        #expect(inFlight.start(saleID: "tablets", customerID: "alice", key: "", quantity: 2, limit: 2) == .lead)
        #expect(inFlight.pendingUnits(saleID: "phones", customerID: "alice") == 2)
        #expect(inFlight.pendingUnits(saleID: "tablets", customerID: "alice") == 2)
    }

    // The first request with a key leads it; the next ones follow (nothing reserved, whatever the limit) and
    // are handed back when the leader finishes; after that the key leads again.
    @Test func keyedRequestsFollowTheirLeader() {
        let inFlight = InFlightOrders<Int>()
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "k1", quantity: 2, limit: 2) == .lead)
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "k1", quantity: 2, limit: 2) == .follow)
        #expect(inFlight.follow(saleID: "s", customerID: "alice", key: "k1", 7))
        #expect(inFlight.follow(saleID: "s", customerID: "alice", key: "k1", 8))
        #expect(!inFlight.follow(saleID: "s", customerID: "alice", key: "k2", 9), "nobody leads k2")
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "k2", quantity: 1, limit: 2) == .overLimit)
        #expect(inFlight.start(saleID: "s", customerID: "bob", key: "k1", quantity: 1, limit: 2) == .lead, "keys are per customer")
        #expect(inFlight.pendingUnits(saleID: "s", customerID: "alice") == 2, "followers reserve nothing")
        #expect(inFlight.finish(saleID: "s", customerID: "alice", key: "k1", quantity: 2) == [7, 8])
        #expect(!inFlight.follow(saleID: "s", customerID: "alice", key: "k1", 10), "the leader finished")
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "k1", quantity: 1, limit: 2) == .lead)
        #expect(inFlight.finish(saleID: "s", customerID: "alice", key: "k1", quantity: 1).isEmpty)
        #expect(inFlight.finish(saleID: "s", customerID: "bob", key: "k1", quantity: 1).isEmpty)
        #expect(inFlight.count == 0)
    }

    // Keys are compared as bytes: a canonically equivalent key is another key.
    @Test func keysAreBytes() {
        let inFlight = InFlightOrders<Int>()
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "jos\u{e9}", quantity: 1, limit: 2) == .lead)
        #expect(inFlight.start(saleID: "s", customerID: "alice", key: "jose\u{301}", quantity: 1, limit: 2) == .lead)
    }
}
