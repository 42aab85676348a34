import Benchmark
import Foundation
import Logging
import Replication
import ReservationEngine
import Synchronization
import TestSupport

/// Engine microbenchmarks and in-process ledger throughput. The ledger benchmarks start their own
/// redis-server (AOF on, appendfsync always) on a free loopback port.
let benchmarks: @Sendable () -> Void = {
    let nanoseconds = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal], scalingFactor: .mega, maxDuration: .seconds(2))

    // MARK: Bucket take vs a bare atomic decrement

    Benchmark("Bare atomic decrement, uncontended (baseline)", configuration: nanoseconds) { benchmark in
        let counter = Atomic<Int>(Int.max / 2)
        for _ in benchmark.scaledIterations { blackHole(counter.subtract(1, ordering: .relaxed)) }
    }
    Benchmark("Bucket take, uncontended", configuration: nanoseconds) { benchmark in
        let bucket = TokenBucket(shardID: "s", fence: 1, units: Int.max / 4)
        for _ in benchmark.scaledIterations { blackHole(bucket.take(1)) }
    }
    Benchmark("Bare atomic decrement, 2 threads (baseline)", configuration: nanoseconds) { benchmark in
        let counter = SharedAtomic()
        let perThread = benchmark.scaledIterations.count / 2
        runOnTwoThreads { for _ in 0..<perThread { blackHole(counter.value.subtract(1, ordering: .relaxed)) } }
    }
    Benchmark("Bucket take, 2 threads", configuration: nanoseconds) { benchmark in
        let bucket = TokenBucket(shardID: "s", fence: 1, units: Int.max / 4)
        let perThread = benchmark.scaledIterations.count / 2
        runOnTwoThreads { for _ in 0..<perThread { blackHole(bucket.take(1)) } }
    }

    // MARK: Order ids

    let micro = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal, .syscalls], scalingFactor: .kilo, maxDuration: .seconds(2))
    Benchmark("Order id", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(OrderID.make(saleID: "phones-2026")) }
    }
    Benchmark("Order id (two getrandom and string concatenation, baseline)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            var generator = SystemRandomNumberGenerator()
            let high = generator.next() as UInt64
            let low = UInt32(truncatingIfNeeded: generator.next() as UInt64)
            let highHex = String(high, radix: 16)
            let lowHex = String(low, radix: 16)
            blackHole("phones-2026" + "." + "o" + String(repeating: "0", count: 16 - highHex.utf8.count) + highHex
                + String(repeating: "0", count: 8 - lowHex.utf8.count) + lowHex)
        }
    }

    // MARK: In-flight bookkeeping per order

    // A keyed order's start and finish: its customer's units and its key, for 1,000 customers in turn.
    let customers = (0..<1_000).map { "customer-\($0)" }
    Benchmark("In-flight start + finish, keyed order (one map per customer and sale)", configuration: micro) { benchmark in
        let inFlight = InFlightOrders<Int>()
        for iteration in benchmark.scaledIterations {
            let customer = customers[iteration % customers.count]
            blackHole(inFlight.start(saleID: "phones-2026", customerID: customer, key: "checkout-1", quantity: 1, limit: 2))
            blackHole(inFlight.finish(saleID: "phones-2026", customerID: customer, key: "checkout-1", quantity: 1))
        }
    }
    Benchmark("In-flight start + finish, keyed order (a key map and a units map, baseline)", configuration: micro) { benchmark in
        let baseline = TwoMapsBaseline()
        for iteration in benchmark.scaledIterations {
            let customer = customers[iteration % customers.count]
            blackHole(baseline.start(saleID: "phones-2026", customerID: customer, key: "checkout-1", quantity: 1, limit: 2))
            baseline.finish(saleID: "phones-2026", customerID: customer, key: "checkout-1", quantity: 1)
        }
    }

    // MARK: Commit batch encoding

    for orders in [1, 64, 512] {
        let commits = (0..<orders).map { index in
            PendingCommit(orderID: "o\(String(index, radix: 16))0123456789abcdef", shardID: "instance-1#42", fence: 1_234,
                          customerID: "customer-\(index)", quantity: 1, idempotencyKey: "checkout-\(index)",
                          delivery: String(repeating: "x", count: 96))
        }
        Benchmark("Commit batch encoding, \(orders) orders", configuration: .init(metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(2))) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(Ledger.encodeCommit(owner: "instance-1", commits)) }
        }
    }

    // MARK: The reservation's trip through the committer, without Redis

    // `reservationsPerRound` trips from `concurrentCustomers` tasks: each caller parks on a continuation, its
    // resume is queued to a BatchingThread whose handler resumes the whole batch at once (what the group
    // committer does once its EVALSHA answered), and the caller's task is scheduled again. Next to it the
    // same callers with an unsafe continuation, and the floor: a continuation resumed at once, no thread.
    let tripConfiguration = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(10), maxIterations: 30)
    Benchmark("Committer trip without Redis (checked continuation), \(reservationsPerRound) trips", configuration: tripConfiguration) { benchmark in
        try await committerTrips(benchmark) { thread in
            await withCheckedContinuation { continuation in
                if thread.submit({ continuation.resume() }) != .accepted { continuation.resume() }
            }
        }
    }
    Benchmark("Committer trip without Redis (unsafe continuation), \(reservationsPerRound) trips", configuration: tripConfiguration) { benchmark in
        try await committerTrips(benchmark) { thread in
            await withUnsafeContinuation { continuation in
                if thread.submit({ continuation.resume() }) != .accepted { continuation.resume() }
            }
        }
    }
    Benchmark("Await floor: a continuation resumed at once (baseline), \(reservationsPerRound) awaits", configuration: tripConfiguration) { benchmark in
        benchmark.startMeasurement()
        let trips = await runReservations { _ in
            await withCheckedContinuation { $0.resume() }
            return true
        }
        benchmark.stopMeasurement()
        precondition(trips == reservationsPerRound, "every await came back (\(trips))")
    }

    // MARK: Ledger throughput, in process (no HTTP)

    let ledgerConfiguration = Benchmark.Configuration(metrics: [.wallClock], maxDuration: .seconds(30), maxIterations: 5)
    for instances in [1, 3] {
        Benchmark("Ledger, group commit, \(instances) instance(s), \(reservationsPerRound) reservations", configuration: ledgerConfiguration) { benchmark in
            let sale = try LedgerFixture.createOpenSale(on: sharedRedis, stock: 10_000_000, limit: 100)
            let engines = (0..<instances).map { LedgerFixture.engine(on: sharedRedis, instanceID: "bench-\($0)", leaseTTLMilliseconds: 5_000, maxShardUnits: 1_024) }
            let reconcilers = Task {
                while !Task.isCancelled {
                    for engine in engines { await engine.reconcileAll() }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            benchmark.startMeasurement()
            let confirmed = await runReservations { index in
                let outcome = await engines[index % instances].reserve(saleID: sale.id, customerID: "c\(index)", quantity: 1, idempotencyKey: nil, delivery: "{}")
                if case .confirmed = outcome { return true }
                return false
            }
            benchmark.stopMeasurement()
            reconcilers.cancel()
            await reconcilers.value
            precondition(confirmed == reservationsPerRound, "every reservation confirmed (\(confirmed))")
            for engine in engines { await engine.shutdown() }
        }
    }
    Benchmark("Ledger, one EVALSHA per order (textbook), \(reservationsPerRound) reservations", configuration: ledgerConfiguration) { benchmark in
        let sale = try LedgerFixture.createOpenSale(on: sharedRedis, stock: 10_000_000, limit: 100)
        let clients = (0..<8).map { RedisClient(configuration: sharedRedis.configuration, name: "direct-\($0)") }
        benchmark.startMeasurement()
        let confirmed = await runReservations { index in
            let outcome = try? await clients[index % clients.count].withConnection { connection throws(RedisError) in
                try Ledger(connection: connection).directOrder(saleID: sale.id, orderID: "d\(index)", customerID: "c\(index)",
                                                              quantity: 1, idempotencyKey: "", delivery: "{}")
            }
            if case .committed? = outcome { return true }
            return false
        }
        benchmark.stopMeasurement()
        precondition(confirmed == reservationsPerRound, "every reservation confirmed (\(confirmed))")
        for client in clients { client.shutdown() }
    }
}

let reservationsPerRound = 20_000
/// Concurrent customers in the ledger benchmarks.
let concurrentCustomers = 256

nonisolated(unsafe) let sharedRedis: RedisServer = {
    do {
        let server = try RedisServer()
        atexit { sharedRedis.stop() }
        return server
    } catch {
        fatalError("cannot start redis-server: \(error)")
    }
}()

/// `reservationsPerRound` trips through a BatchingThread that resumes each batch at once, as the group
/// committer does once its EVALSHA answered; `trip` parks the caller and queues its resume.
func committerTrips(_ benchmark: Benchmark, _ trip: @escaping @Sendable (BatchingThread<@Sendable () -> Void>) async -> Void) async throws {
    let thread = BatchingThread<@Sendable () -> Void>(name: "bench-trip", queueCapacity: 65_536, maxBatchItems: 512) { batch in
        for resume in batch { resume() }
    }
    benchmark.startMeasurement()
    let trips = await runReservations { _ in
        await trip(thread)
        return true
    }
    benchmark.stopMeasurement()
    thread.shutdown()
    precondition(trips == reservationsPerRound, "every trip came back (\(trips))")
}

/// Runs `reservationsPerRound` reservations from `concurrentCustomers` tasks; returns how many succeeded.
func runReservations(_ reserve: @escaping @Sendable (Int) async -> Bool) async -> Int {
    await withTaskGroup(of: Int.self) { group in
        for worker in 0..<concurrentCustomers {
            group.addTask {
                var succeeded = 0
                for index in stride(from: worker, to: reservationsPerRound, by: concurrentCustomers) where await reserve(index) {
                    succeeded += 1
                }
                return succeeded
            }
        }
        var total = 0
        for await part in group { total += part }
        return total
    }
}

final class SharedAtomic: Sendable {
    let value = Atomic<Int>(Int.max / 2)
}

/// Runs `body` on two OS threads at once and waits for both.
func runOnTwoThreads(_ body: @escaping @Sendable () -> Void) {
    let group = DispatchGroup()
    for _ in 0..<2 {
        group.enter()
        Thread.detachNewThread {
            body()
            group.leave()
        }
    }
    group.wait()
}

/// The bookkeeping an order did before InFlightOrders (for the baseline): a global map of the keys in flight,
/// keyed by a string built from sale, customer and key, and sharded maps of each customer's pending units.
private final class TwoMapsBaseline: Sendable {
    private let keyed = Mutex<[CustomerKey: [Int]]>([:])
    private final class Shard: Sendable {
        let units = Mutex<[CustomerKey: Int]>([:])
    }
    private let shards = (0..<64).map { _ in Shard() }

    func start(saleID: String, customerID: String, key: String, quantity: Int, limit: Int) -> Bool {
        let requestKey = CustomerKey("\(saleID.utf8.count):\(saleID)\(customerID.utf8.count):\(customerID)\(key)")
        let claimed = keyed.withLock { requests -> Bool in
            if requests[requestKey] != nil { return false }
            requests[requestKey] = []
            return true
        }
        guard claimed else { return false }
        return shard(customerID).units.withLock { pending in
            let current = pending[CustomerKey(customerID), default: 0]
            guard current + quantity <= limit else { return false }
            pending[CustomerKey(customerID)] = current + quantity
            return true
        }
    }

    func finish(saleID: String, customerID: String, key: String, quantity: Int) {
        shard(customerID).units.withLock { pending in
            let current = pending[CustomerKey(customerID), default: 0]
            pending[CustomerKey(customerID)] = current == quantity ? nil : current - quantity
        }
        let requestKey = CustomerKey("\(saleID.utf8.count):\(saleID)\(customerID.utf8.count):\(customerID)\(key)")
        blackHole(keyed.withLock { $0.removeValue(forKey: requestKey) })
    }

    private func shard(_ customerID: String) -> Shard {
        var hasher = Hasher()
        hasher.combine(CustomerKey(customerID))
        return shards[Int(UInt(bitPattern: hasher.finalize()) % 64)]
    }
}
