import Logging
import Synchronization

/// The group committer: one hiredis connection on its own thread.
///
/// Reservations decided locally queue here. The thread takes everything that queued while its previous
/// call was in flight (at most `maxBatchOrders`) and sends ONE `EVALSHA` per sale for it. Under low load
/// a batch is one order and the latency is one round trip; under high load batches grow by themselves.
/// A caller is resumed only after the script answered: nothing is acknowledged before it is in the ledger.
///
/// Lease operations of the instance (acquire, renew, return) go through the same queue as ``perform(_:)``,
/// so they are ordered with the commits: a lease is returned only after the commits queued before it.
///
/// When a commit's outcome is unknown (timeout, broken connection), the same batch is sent once more on a
/// fresh connection, marked as a replay: the script then looks its order ids up, recognises orders it already
/// holds and answers them as duplicates, so a retry never sells twice (a first attempt skips that read: its
/// ids are new). If that fails too, the callers get ``CommitOutcome/unavailable(_:)``.
public final class GroupCommitter: Sendable {
    public struct Configuration: Sendable {
        public var queueCapacity: Int
        public var maxBatchOrders: Int
        /// The commit delay: after a batch of at least `commitDelayAfterOrders` requests, wait up to this long
        /// for more before sending the next (0: never). Larger batches cost the ledger less per order (its
        /// fixed cost per script call is shared by more orders); every order of a busy committer waits up to this
        /// much longer. A committer whose last batch was smaller never waits.
        public var commitDelayMicroseconds: Int
        public var commitDelayAfterOrders: Int
        /// The longest commit delay (`FLASHSALE_COMMIT_DELAY_US`): a batching aid, not a schedule.
        public static let maxCommitDelayMicroseconds = 100_000

        public init(queueCapacity: Int = 65_536, maxBatchOrders: Int = 512, commitDelayMicroseconds: Int = 0, commitDelayAfterOrders: Int = 32) {
            precondition(queueCapacity > 0 && maxBatchOrders > 0 && commitDelayAfterOrders > 0)
            precondition((0...Self.maxCommitDelayMicroseconds).contains(commitDelayMicroseconds), "a commit delay is at most 100 ms")
            self.queueCapacity = queueCapacity
            self.maxBatchOrders = maxBatchOrders
            self.commitDelayMicroseconds = commitDelayMicroseconds
            self.commitDelayAfterOrders = commitDelayAfterOrders
        }
    }

    enum Request: Sendable {
        case commit(saleID: String, PendingCommit, @Sendable (CommitOutcome) -> Void)
        case control(@Sendable (Result<Ledger, RedisError>) -> Void)
    }

    /// Counters for metrics and benchmarks.
    public struct Statistics: Sendable, Hashable {
        public var batches: Int
        public var orders: Int
        public var retries: Int
    }

    private let thread: BatchingThread<Request>
    private let counters: Counters

    public init(
        redis: RedisConfiguration, owner: String, configuration: Configuration = Configuration(), logger: Logger,
        observer: (any CommitObserver)? = nil, threadName: String = "group-committer"
    ) {
        let counters = Counters()
        self.counters = counters
        let worker = CommitWorker(redis: redis, owner: owner, logger: logger, counters: counters, observer: observer)
        thread = BatchingThread(
            name: threadName,
            queueCapacity: configuration.queueCapacity,
            maxBatchItems: configuration.maxBatchOrders,
            linger: configuration.commitDelayMicroseconds > 0
                ? .init(afterBatchItems: configuration.commitDelayAfterOrders, nanoseconds: UInt64(configuration.commitDelayMicroseconds) * 1_000)
                : nil
        ) { requests in
            worker.handle(requests)
        }
    }

    public var statistics: Statistics {
        Statistics(
            batches: counters.batches.load(ordering: .relaxed),
            orders: counters.orders.load(ordering: .relaxed),
            retries: counters.retries.load(ordering: .relaxed)
        )
    }

    public var queuedCount: Int { thread.queuedCount }

    /// Queues one order and waits until the ledger decided it.
    public func commit(saleID: String, _ commit: PendingCommit) async -> CommitOutcome {
        await withCheckedContinuation { continuation in
            let request = Request.commit(saleID: saleID, commit) { outcome in continuation.resume(returning: outcome) }
            switch thread.submit(request) {
            case .accepted: break
            case .queueFull: continuation.resume(returning: .unavailable(RedisError(.queueFull, "commit queue is full")))
            case .stopped: continuation.resume(returning: .unavailable(RedisError(.shutDown, "group committer stopped")))
            }
        }
    }

    /// Runs `body` on the committer's thread, after every commit queued before it.
    public func perform<Value: Sendable>(_ body: @escaping @Sendable (Ledger) throws(RedisError) -> Value) async throws(RedisError) -> Value {
        let outcome: Result<Value, RedisError> = await withCheckedContinuation { continuation in
            let request = Request.control { ledger in
                switch ledger {
                case .failure(let error):
                    continuation.resume(returning: .failure(error))
                case .success(let ledger):
                    do throws(RedisError) {
                        continuation.resume(returning: .success(try body(ledger)))
                    } catch {
                        continuation.resume(returning: .failure(error))
                    }
                }
            }
            switch thread.submit(request) {
            case .accepted: break
            case .queueFull: continuation.resume(returning: .failure(RedisError(.queueFull, "commit queue is full")))
            case .stopped: continuation.resume(returning: .failure(RedisError(.shutDown, "group committer stopped")))
            }
        }
        return try outcome.get()
    }

    /// Finishes every queued request, then stops the thread.
    public func shutdown() {
        thread.shutdown()
    }
}

/// Told about every commit batch (for metrics): its size and the time from send to answer.
public protocol CommitObserver: Sendable {
    func batchCommitted(orders: Int, latency: Duration)
}

final class Counters: Sendable {
    let batches = Atomic(0)
    let orders = Atomic(0)
    let retries = Atomic(0)
}

/// State of the committer's thread. `@unchecked Sendable`: used only on that thread.
private final class CommitWorker: @unchecked Sendable {
    private let redis: RedisConfiguration
    private let owner: String
    private let logger: Logger
    private let counters: Counters
    private let observer: (any CommitObserver)?
    private var connection: RedisConnection?

    init(redis: RedisConfiguration, owner: String, logger: Logger, counters: Counters, observer: (any CommitObserver)?) {
        self.redis = redis
        self.owner = owner
        self.logger = logger
        self.counters = counters
        self.observer = observer
    }

    func handle(_ requests: [GroupCommitter.Request]) {
        var runStart = requests.startIndex
        for index in requests.indices {
            guard case .control(let body) = requests[index] else { continue }
            flush(requests[runStart..<index])
            body(ledger())
            runStart = index + 1
        }
        flush(requests[runStart...])
    }

    private func ledger() -> Result<Ledger, RedisError> {
        if let connection { return .success(Ledger(connection: connection)) }
        do throws(RedisError) {
            let fresh = try RedisConnection(configuration: redis)
            connection = fresh
            return .success(Ledger(connection: fresh))
        } catch {
            return .failure(error)
        }
    }

    /// One EVALSHA per sale present in the run (commits only), orders of a sale in arrival order. The
    /// requests stay where they are: a sale's orders are picked by index (a run rarely holds more than one sale).
    private func flush(_ run: ArraySlice<GroupCommitter.Request>) {
        guard !run.isEmpty else { return }
        var sales: [(saleID: String, indices: [Int])] = []
        for index in run.indices {
            guard case .commit(let saleID, _, _) = run[index] else { preconditionFailure("a run holds commits only") }
            if let known = sales.firstIndex(where: { $0.saleID == saleID }) {
                sales[known].indices.append(index)
            } else {
                sales.append((saleID, [index]))
            }
        }
        for (saleID, indices) in sales {
            let commits = indices.map { index -> PendingCommit in
                guard case .commit(_, let commit, _) = run[index] else { preconditionFailure("a run holds commits only") }
                return commit
            }
            let started = ContinuousClock.now
            let outcomes = commitWithOneRetry(saleID: saleID, commits)
            observer?.batchCommitted(orders: commits.count, latency: started.duration(to: .now))
            assert(outcomes.count == commits.count, "one outcome per order")
            counters.batches.add(1, ordering: .relaxed)
            counters.orders.add(commits.count, ordering: .relaxed)
            for (index, outcome) in zip(indices, outcomes) {
                guard case .commit(_, _, let completion) = run[index] else { preconditionFailure("a run holds commits only") }
                completion(outcome)
            }
        }
    }

    /// With `replicaAcks` configured, a batch that committed anything is acknowledged only once that many
    /// replicas have it (`WAIT`). Short of that, its committed orders are answered `unavailable`: they exist
    /// in the ledger (a retry with the same Idempotency-Key returns them) but were not promised to anyone.
    private func awaitReplicas(_ connection: RedisConnection, _ outcomes: [CommitOutcome]) throws(RedisError) -> [CommitOutcome] {
        // Duplicates too: after an unknown outcome the retry answers our own orders as duplicates.
        func promised(_ outcome: CommitOutcome) -> Bool {
            switch outcome {
            case .committed, .duplicate: true
            default: false
            }
        }
        guard redis.replicaAcks > 0, outcomes.contains(where: promised) else { return outcomes }
        do throws(RedisError) {
            try Ledger(connection: connection).requireReplicas()
            return outcomes
        } catch where error.code == .notReplicated {
            logger.warning("commit batch not replicated in time; its customers are told to retry", metadata: [
                "orders": "\(outcomes.count)", "error": "\(error.message)",
            ])
            return outcomes.map { promised($0) ? .unavailable(error) : $0 }
        }
    }

    private func commitWithOneRetry(saleID: String, _ commits: [PendingCommit]) -> [CommitOutcome] {
        var lastError = RedisError(.connectionFailed, "not attempted")
        attempts: for attempt in 0..<2 {
            switch ledger() {
            case .failure(let error):
                lastError = error
            case .success(let ledger):
                do throws(RedisError) {
                    // The retry is the same batch again: its ids may be in the ledger already.
                    let outcomes = try ledger.commit(saleID: saleID, owner: owner, commits, replay: attempt > 0)
                    return try awaitReplicas(ledger.connection, outcomes)
                } catch {
                    lastError = error
                    // A server error (script error) is definite: no retry.
                    if error.code == .serverError || error.code == .unexpectedReply { break attempts }
                    // Outcome unknown or connection lost: drop the connection, the retry reconnects.
                    connection?.close()
                }
            }
            if attempt == 0 {
                counters.retries.add(1, ordering: .relaxed)
                logger.warning("commit batch failed, retrying once", metadata: ["sale": "\(saleID)", "orders": "\(commits.count)", "error": "\(lastError)"])
            }
        }
        logger.error("commit batch failed", metadata: ["sale": "\(saleID)", "orders": "\(commits.count)", "error": "\(lastError)"])
        return Array(repeating: .unavailable(lastError), count: commits.count)
    }
}
