import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Moves each sale's confirmed orders, stock changes and sale document from Redis to MongoDB.
///
/// Per sale and pass: the sale document (when the ledger's meta changed), then a batch of the commit log
/// (entries naming a commit batch's orders by id: their records are read from the ledger), a batch of the
/// outbox stream (cancellations, orders of the waitlist, entries of earlier versions), then a batch of the
/// stock log. Streams are read with a consumer group, so several instances
/// can drain side by side and an instance that dies leaves its claimed entries pending; they are taken
/// over after ``Configuration/claimIdleMilliseconds`` with `XAUTOCLAIM`. An entry is acknowledged (and
/// removed from the outbox) only after MongoDB accepted its write with write concern majority.
///
/// Failures: a transient error (MongoDB unreachable, an election, a write-concern timeout) leaves the
/// entries pending and the drainer waits with capped exponential backoff and full jitter before the
/// next pass; nothing is lost however long MongoDB is away. A document MongoDB refuses for good (a
/// validation error, say) runs the compensating transaction on the ledger (``Ledger/failOrder``): the
/// order is marked failed and its units go back to the sale. A command-level error that is not transient
/// (authentication, a misconfigured server) is retried like a transient one, never compensated: it says
/// nothing about the orders.
///
/// Rule: a cancellation reaches MongoDB or the sale's keys stay in Redis. There is nothing to compensate for
/// a cancellation MongoDB refuses for good, and dropping it would leave MongoDB saying "confirmed" for a
/// cancelled order once the ledger retires. So it is never acknowledged: it stays pending in the outbox,
/// is retried with capped exponential backoff (at most once per backoff interval, the interval doubling up to
/// ``Configuration/backoffCapMilliseconds``), keeps the sale from retiring (its outbox is not empty) and is
/// counted in ``Status/heldCancellations`` (and `/readyz`) until MongoDB takes it or an operator fixes it.
///
/// Bounds: at most ``Configuration/batchSize`` entries per stream per pass, at most
/// ``Configuration/maxSalesPerPass`` sales per pass, so memory stays bounded whatever the backlog.
///
/// Isolation: a sale whose drain fails (a sale document MongoDB refuses, a key of the wrong type) is skipped
/// for the pass and its failure recorded (``Status/failingSales``); the sales after it drain. Only a store out
/// of reach (MongoDB or Redis unreachable), or a pass in which every sale failed, stops the pass and backs off.
///
/// Retention: the stock log is trimmed up to the oldest entry not yet acknowledged. Once a sale is closed,
/// summarized and drained, its keys get a TTL of ``Configuration/retentionSeconds`` (set once: `EXPIRE NX`),
/// it is scheduled to leave the registry of all sales when that TTL runs out, and this process forgets it.
/// The sale document, its orders and stock events live on in MongoDB. Without MongoDB nothing expires:
/// the Redis outbox is then the only copy of the orders.
public final class OutboxDrainer: Service, Sendable {
    public struct Configuration: Sendable {
        public var group = "mongo-sink"
        /// This consumer's name in the group (the instance id: unique per live instance).
        public var consumer: String
        public var batchSize = 256
        public var maxSalesPerPass = 1_000
        public var idlePollMilliseconds = 200
        /// Pending entries idle this long belong to a consumer presumed dead and are claimed.
        public var claimIdleMilliseconds = 30_000
        public var backoffBaseMilliseconds = 100
        public var backoffCapMilliseconds = 10_000
        /// How long a settled, drained sale's keys stay in Redis (`FLASHSALE_RETENTION_SECONDS`).
        public var retentionSeconds = 7 * 24 * 3_600

        public init(consumer: String) {
            self.consumer = consumer
        }
    }

    /// What one pass did.
    public struct Pass: Sendable, Equatable {
        public var orders = 0
        public var stockEvents = 0
        public var sales = 0
        public var compensated = 0
        /// Entries left pending by a transient per-document error (retried next pass).
        public var deferred = 0
        /// Sales whose drain failed in this pass (skipped; see ``Status/failingSales``).
        public var failedSales = 0
        /// Cancellations MongoDB refused for good in this pass: kept in the outbox (see the rule above).
        public var heldCancellations = 0

        public var moved: Int { orders + stockEvents + sales + compensated }
    }

    /// For `/readyz` and metrics.
    public struct Status: Sendable {
        public var lastError: String?
        public var consecutiveFailures = 0
        public var lastSuccessAtMilliseconds: Int64?
        public var ordersWritten = 0
        public var stockEventsWritten = 0
        public var compensated = 0
        /// Sales whose drain failed in their last attempt, with the error (at most one per sale in the registry).
        public var failingSales: [String: String] = [:]
        /// Cancellations MongoDB refused for good that wait in the outbox for a retry (their sales cannot retire).
        public var heldCancellations = 0
    }

    public let configuration: Configuration
    private let redis: RedisClient
    private let mongo: MongoClient
    private let logger: Logger
    private let state = Mutex(DrainState())

    private struct DrainState {
        var status = Status()
        var groupsCreated: Set<String> = []
        /// The meta hash last written to `sales`, per sale (skip unchanged sales).
        var writtenMeta: [String: [String: String]] = [:]
        /// Sales closed, summarized and fully drained: nothing more will come from them.
        var finished: Set<String> = []
        var indexesCreated = false
        /// Cancellations MongoDB refused for good, by sale and outbox entry id: when to try again.
        var held: [HeldEntry: HeldCancellation] = [:]
    }

    private struct HeldEntry: Hashable {
        let saleID: String
        let entryID: String
    }

    private struct HeldCancellation {
        var attempts: Int
        var retryAt: ContinuousClock.Instant
    }

    public init(redis: RedisClient, mongo: MongoClient, configuration: Configuration, logger: Logger) {
        precondition(configuration.batchSize > 0 && configuration.batchSize <= 10_000, "batchSize must be in 1...10000")
        precondition(configuration.retentionSeconds >= 1, "retentionSeconds must be positive")
        self.redis = redis
        self.mongo = mongo
        self.configuration = configuration
        self.logger = logger
    }

    public var status: Status { state.withLock { $0.status } }

    /// Sales this drainer keeps anything about in memory (bounded by the sales in the registry).
    public var trackedSaleCount: Int {
        state.withLock { Set($0.writtenMeta.keys).union($0.groupsCreated).union($0.finished).count }
    }

    public func run() async throws {
        var failures = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let pause: Int
            do {
                let pass = try await drainOnce()
                if (pass.deferred > 0 || pass.failedSales > 0) && pass.moved == 0 {
                    // Only documents or sales that keep failing: back off rather than spin on them.
                    failures += 1
                    pause = Self.backoff(attempt: failures, base: configuration.backoffBaseMilliseconds, cap: configuration.backoffCapMilliseconds)
                } else {
                    failures = 0
                    pause = pass.moved == 0 ? configuration.idlePollMilliseconds : 0
                }
            } catch {
                failures += 1
                pause = Self.backoff(attempt: failures, base: configuration.backoffBaseMilliseconds, cap: configuration.backoffCapMilliseconds)
                if failures == 1 || failures % 20 == 0 {
                    logger.warning("outbox drain failed; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)", "retryInMs": "\(pause)"])
                }
            }
            if pause > 0 {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(pause)) }
            }
        }
        mongo.shutdown()
    }

    /// Capped exponential backoff with full jitter: uniform in `0...min(cap, base·2^(attempt-1))`.
    static func backoff(attempt: Int, base: Int, cap: Int) -> Int {
        let exponent = min(max(attempt - 1, 0), 20)
        let ceiling = min(cap, base << exponent)
        return Int.random(in: 0...max(ceiling, 1))
    }

    /// One pass over every sale. Throws on a failure that stopped the pass (the next pass resumes).
    @discardableResult
    public func drainOnce() async throws -> Pass {
        do {
            let result = try await drainSales()
            state.withLock {
                $0.status.lastError = $0.status.failingSales.min { $0.key < $1.key }.map { "sale \($0.key): \($0.value)" }
                $0.status.consecutiveFailures = 0
                $0.status.lastSuccessAtMilliseconds = Int64(Date().timeIntervalSince1970 * 1_000)
                $0.status.ordersWritten += result.orders
                $0.status.stockEventsWritten += result.stockEvents
                $0.status.compensated += result.compensated
            }
            return result
        } catch {
            state.withLock {
                $0.status.lastError = String(describing: error)
                $0.status.consecutiveFailures += 1
            }
            throw error
        }
    }

    private func drainSales() async throws -> Pass {
        if !state.withLock({ $0.indexesCreated }) {
            for (collection, indexes) in OutboxDocuments.indexes { try await mongo.createIndexes(collection, indexes) }
            state.withLock { $0.indexesCreated = true }
        }
        let limit = configuration.maxSalesPerPass
        let sales = try await redis.withConnection { connection throws(RedisError) -> [String] in
            var command = RedisCommand("ZREVRANGE", LedgerKeys.allSales, "0")
            command.append(limit - 1)
            return (try connection.send(command).throwingServerError().array ?? []).compactMap(\.string)
        }
        var pass = Pass()
        var attempted = 0
        var firstFailure: (any Error)?
        // On Redis Cluster each sale lives on one master: a master that does not answer fails its own sales, and
        // the rest of the pass skips them (each would wait for the command timeout) while the other masters' sales
        // drain on.
        let clustered = !redis.configuration.clusterNodes.isEmpty
        var silentMasters: Set<RedisConfiguration.Endpoint> = []
        for saleID in sales where !state.withLock({ $0.finished.contains(saleID) }) {
            attempted += 1
            do {
                if !silentMasters.isEmpty, let master = try await lastKnownMaster(of: saleID), silentMasters.contains(master) {
                    throw RedisError(.clusterUnavailable, "its Redis master \(master) did not answer earlier in this pass")
                }
                try await drain(saleID: saleID, into: &pass)
                state.withLock { _ = $0.status.failingSales.removeValue(forKey: saleID) }
            } catch {
                if Self.isStoreUnreachable(error) {
                    // Every sale would fail the same way: stop the pass (the next one resumes after a backoff); on
                    // Redis Cluster, every sale of the same master.
                    guard clustered, error is RedisError else { throw error }
                    if let master = try? await lastKnownMaster(of: saleID) {
                        assert(silentMasters.count < 1_024, "a cluster has at most a few hundred masters")
                        silentMasters.insert(master)
                    }
                }
                firstFailure = firstFailure ?? error
                pass.failedSales += 1
                let newlyFailing = state.withLock { state -> Bool in
                    defer { state.status.failingSales[saleID] = String(String(describing: error).prefix(300)) }
                    return state.status.failingSales[saleID] == nil
                }
                if newlyFailing {
                    logger.warning("draining a sale failed; the other sales drain on", metadata: ["sale": "\(saleID)", "error": "\(error)"])
                }
            }
        }
        // Sales that left the registry are forgotten here too.
        let listed = Set(sales)
        state.withLock {
            $0.finished.formIntersection(listed)
            $0.status.failingSales = $0.status.failingSales.filter { listed.contains($0.key) }
            $0.held = $0.held.filter { listed.contains($0.key.saleID) }
            $0.status.heldCancellations = $0.held.count
        }
        try await forgetExpiredSales()
        // Not one sale drained: the pass failed as a whole (and is retried with backoff).
        if let firstFailure, pass.failedSales == attempted { throw firstFailure }
        return pass
    }

    /// On Redis Cluster, the master of the sale's slot in the client's last slot map (no command sent).
    private func lastKnownMaster(of saleID: String) async throws -> RedisConfiguration.Endpoint? {
        try await redis.withConnection { connection throws(RedisError) in
            connection.lastKnownClusterOwner(ofKey: LedgerKeys(saleID: saleID).meta)
        }
    }

    /// An error that says the store is out of reach (not something about one sale).
    static func isStoreUnreachable(_ error: any Error) -> Bool {
        if let error = error as? MongoError { return error.isUnreachable }
        if let error = error as? RedisError { return error.code != .serverError && error.code != .unexpectedReply }
        return false
    }

    /// Settled sales whose retention ran out leave the registries (their keys have expired by now), each in
    /// its own transaction on a fresh read (`WATCH` of the registries, which share a slot; the sale's meta may be
    /// on another node of a cluster, so it is read, not watched): its entries go only while the retirement entry
    /// still has the score it was due at, and never for a live sale. A sale created again with the same id (its
    /// meta has no TTL) keeps its entries in `all` and `active`; only the old retirement's entry goes. Creating a
    /// sale writes the registries, then meta, then the registries again (``Ledger/createSale(_:)``): a creation
    /// that starts after the read interrupts the transaction, and one whose meta the read missed writes the
    /// registries again after it. A transaction that a write interrupted is left for the next pass. At most
    /// 1,000 per pass.
    private func forgetExpiredSales() async throws {
        let forgotten = try await redis.withConnection { connection throws(RedisError) -> [String] in
            let now = try Self.redisMilliseconds(connection)
            var due = RedisCommand("ZRANGEBYSCORE", LedgerKeys.retiringSales, "-inf")
            due.append(now)
            due.append(contentsOf: RedisCommand("WITHSCORES", "LIMIT", "0", "1000"))
            let flat = try connection.send(due).throwingServerError().array ?? []
            var forgotten: [String] = []
            for index in stride(from: 0, to: flat.count - 1, by: 2) {
                guard let saleID = flat[index].string, let score = flat[index + 1].string else { continue }
                let meta = LedgerKeys(saleID: saleID).meta
                try connection.send(RedisCommand("WATCH", LedgerKeys.allSales, LedgerKeys.activeSales, LedgerKeys.retiringSales)).throwingServerError()
                let ttl = try connection.send(RedisCommand("PTTL", meta)).throwingServerError().integer ?? -2
                // Last before the transaction: on a cluster, `MULTI` goes to the node of the command before it.
                let sameRetirement = try connection.send(RedisCommand("ZSCORE", LedgerKeys.retiringSales, saleID)).throwingServerError().string == score
                var changes: [RedisCommand] = []
                if sameRetirement && ttl == -2 {
                    // The keys are gone: the sale leaves every registry.
                    changes = [RedisCommand("ZREM", LedgerKeys.allSales, saleID), RedisCommand("SREM", LedgerKeys.activeSales, saleID),
                               RedisCommand("ZREM", LedgerKeys.retiringSales, saleID)]
                } else if sameRetirement && ttl == -1 {
                    // A live sale with this id (created after the old one's keys expired): it stays listed.
                    changes = [RedisCommand("ZREM", LedgerKeys.retiringSales, saleID)]
                }
                guard !changes.isEmpty else {
                    try connection.send(RedisCommand("UNWATCH")).throwingServerError()
                    continue
                }
                let replies = try connection.pipeline([RedisCommand("MULTI")] + changes + [RedisCommand("EXEC")])
                for reply in replies { try reply.throwingServerError() }
                if replies.last?.isNull == false { forgotten.append(saleID) }
            }
            return forgotten
        }
        // The retired sale is gone: a sale created again with its id is drained as a new one.
        state.withLock { $0.finished.subtract(forgotten) }
    }

    /// Redis `TIME` in milliseconds (retention is counted on the server's clock, like every sale decision).
    static func redisMilliseconds(_ connection: RedisConnection) throws(RedisError) -> Int64 {
        let parts = try connection.send(RedisCommand("TIME")).throwingServerError().array ?? []
        guard parts.count == 2, let seconds = parts[0].string.flatMap(Int64.init), let micros = parts[1].string.flatMap(Int64.init) else {
            throw RedisError(.unexpectedReply, "TIME answered \(parts)")
        }
        return seconds * 1_000 + micros / 1_000
    }

    /// The sale is closed, summarized and drained: its keys expire after the retention period (set once,
    /// so a restarted drainer does not push the expiry out), and the process forgets it. Decided by one script
    /// on a fresh read (retire_sale.lua): only while meta and the summary are what MongoDB got from this pass
    /// (`meta`, `summary`) and nothing is left to drain, so a drainer never retires on a stale read (another
    /// instance's compensation landing meanwhile). Answers whether the sale retired.
    @discardableResult
    private func retire(saleID: String, meta: [String: String], summary: String) async throws -> Bool {
        let keys = LedgerKeys(saleID: saleID)
        let retention = configuration.retentionSeconds
        let arguments: RedisCommand = {
            var arguments = RedisCommand()
            arguments.append(retention)
            arguments.append(configuration.group)
            arguments.append(summary)
            for (field, value) in meta.sorted(by: { $0.key < $1.key }) {
                arguments.append(field)
                arguments.append(value)
            }
            return arguments
        }()
        let retiredAt = try await redis.withConnection { connection throws(RedisError) -> Int64? in
            let reply = try connection.evaluate(LedgerScripts.retireSale, keys: keys.retained, arguments: arguments)
            if let message = reply.errorMessage { throw RedisError(.serverError, "retire_sale: \(message)") }
            guard let elements = reply.array, elements.first?.string == "RETIRED" else { return nil }
            guard elements.count == 2, let now = elements[1].integer else { throw RedisError(.unexpectedReply, "retire_sale answered \(reply)") }
            var retiring = RedisCommand("ZADD", LedgerKeys.retiringSales, "NX")
            retiring.append(now + Int64(retention) * 1_000)
            retiring.append(saleID)
            try connection.send(retiring).throwingServerError()
            return now
        }
        guard retiredAt != nil else { return false }
        state.withLock { state in
            state.finished.insert(saleID)
            state.writtenMeta.removeValue(forKey: saleID)
            state.groupsCreated.remove(saleID)
        }
        logger.info("sale settled and drained; its keys expire after the retention period", metadata: ["sale": "\(saleID)", "retentionSeconds": "\(retention)"])
        return true
    }

    private func drain(saleID: String, into pass: inout Pass) async throws {
        let keys = LedgerKeys(saleID: saleID)
        // The sale document first: a rebuild needs the sale before its orders.
        let (meta, summary) = try await redis.withConnection { connection throws(RedisError) in
            let replies = try connection.pipeline([RedisCommand("HGETALL", keys.meta), RedisCommand("GET", keys.summary)])
            return (Ledger.pairs(try replies[0].throwingServerError().array ?? []), try replies[1].throwingServerError().string)
        }
        // No ledger (a sale whose keys expired, or one being created): touch nothing, so no stream is
        // created again without its TTL (ensureGroups checks again, atomically with the creation).
        guard !meta.isEmpty, try await ensureGroups(keys) else { return }
        var written = meta
        if let summary { written["\u{0}summary"] = summary }
        if state.withLock({ $0.writtenMeta[saleID] }) != written {
            try await write(OutboxDocuments.sales, [OutboxDocuments.saleWrite(saleID: saleID, meta: meta, summaryJSON: summary)])
            state.withLock { $0.writtenMeta[saleID] = written }
            pass.sales += 1
        }

        let now = ContinuousClock.now
        let waiting = state.withLock { state in
            Set(state.held.filter { $0.key.saleID == saleID && $0.value.retryAt > now }.map(\.key.entryID))
        }
        // The commit log before the outbox: a cancellation in the outbox may follow a batch's confirmation (the
        // two commute in MongoDB either way, see `OutboxDocuments`).
        let commitEntries = try await readBatch(stream: keys.commits)
        if !commitEntries.isEmpty { try await drainCommits(saleID: saleID, entries: commitEntries, into: &pass) }
        let orderEntries = try await readBatch(stream: keys.outbox, skipping: waiting)
        if !orderEntries.isEmpty { try await drainOrders(saleID: saleID, entries: orderEntries, into: &pass) }
        let stockEntries = try await readBatch(stream: keys.stockLog)
        if !stockEntries.isEmpty { try await drainStockLog(saleID: saleID, entries: stockEntries, into: &pass) }

        if meta["status"] == "closed", let summary, commitEntries.isEmpty, orderEntries.isEmpty, stockEntries.isEmpty, waiting.isEmpty {
            // Not retired when it changed since this pass read it (the next pass writes the new sale document
            // first) or something is left to drain.
            try await retire(saleID: saleID, meta: meta, summary: summary)
        }
    }

    /// The commit log: each entry names a batch's orders by id, whose records are read from the ledger in one
    /// pipeline. An entry that names no order, or one the ledger lacks (retirement rules that out:
    /// `retire_sale.lua` waits for the log to be empty before any key gets a TTL), is never acknowledged: the
    /// other entries are written, then the sale is reported failing and keeps its keys, so nothing is dropped
    /// on a malformed or tampered entry (the sale's commit log waits behind it until it is fixed).
    private func drainCommits(saleID: String, entries: [StreamEntry], into pass: inout Pass) async throws {
        let present = entries.filter { !$0.fields.isEmpty }
        let ids = present.flatMap { OutboxDocuments.committedOrderIDs($0) ?? [] }
        let records = try await redis.withConnection { connection throws(RedisError) in
            try Ledger(connection: connection).orderRecords(saleID: saleID, ids: ids)
        }
        var writable: [(entry: StreamEntry, order: OutboxDocuments.OrderWrite)] = []
        var unreadable: [StreamEntry] = []
        for entry in present {
            if let writes = OutboxDocuments.commitWrites(saleID: saleID, entry: entry, records: records) {
                writable.append(contentsOf: writes.map { (entry, $0) })
            } else {
                unreadable.append(entry)
            }
        }
        let kept = Set(unreadable.map(\.id))
        try await writeOrders(saleID: saleID, stream: LedgerKeys(saleID: saleID).commits, entries: entries.filter { !kept.contains($0.id) },
                              writable: writable, into: &pass)
        if let first = unreadable.first {
            throw RedisError(.unexpectedReply, "commit-log entry \(first.id) of sale \(saleID) names no order, or an order the ledger does not hold "
                             + "(\(unreadable.count) such entries kept)")
        }
    }

    private func drainOrders(saleID: String, entries: [StreamEntry], into pass: inout Pass) async throws {
        var writable: [(entry: StreamEntry, order: OutboxDocuments.OrderWrite)] = []
        for entry in entries {
            if let writes = OutboxDocuments.orderWrites(saleID: saleID, entry: entry) {
                writable.append(contentsOf: writes.map { (entry, $0) })
            } else if !entry.fields.isEmpty {
                // Not an order event (an entry deleted while pending has no fields): acknowledged, not written.
                logger.error("unreadable outbox entry skipped", metadata: ["sale": "\(saleID)", "entry": "\(entry.id)"])
            }
        }
        try await writeOrders(saleID: saleID, stream: LedgerKeys(saleID: saleID).outbox, entries: entries, writable: writable, into: &pass)
    }

    /// Writes the order events of `entries` (read from `stream`) and acknowledges (deletes) the entries done.
    /// An entry may carry several orders (a commit batch): each write remembers its entry, and a transient
    /// refusal of any of them keeps the whole entry for the next pass (the writes are idempotent).
    private func writeOrders(
        saleID: String, stream: String, entries: [StreamEntry], writable: [(entry: StreamEntry, order: OutboxDocuments.OrderWrite)],
        into pass: inout Pass
    ) async throws {
        let result = try await mongo.bulkWrite(OutboxDocuments.orders, writable.map(\.order.write))
        var retry: Set<String> = []
        var held: Set<String> = []
        for refused in result.writeErrors {
            precondition(refused.index >= 0 && refused.index < writable.count, "write error index outside the batch")
            let (entry, order) = writable[refused.index]
            if refused.isTransient {
                retry.insert(entry.id)
                continue
            }
            guard order.confirmation else {
                // A cancellation reaches MongoDB or the sale's keys stay in Redis: kept, retried with backoff.
                held.insert(entry.id)
                let attempts = hold(HeldEntry(saleID: saleID, entryID: entry.id))
                if attempts == 1 || attempts % 10 == 0 {
                    logger.error("MongoDB refused a cancellation; it stays in the outbox and the sale in Redis", metadata: [
                        "sale": "\(saleID)", "order": "\(order.orderID)", "entry": "\(entry.id)", "code": "\(refused.code)",
                        "error": "\(refused.message)", "attempts": "\(attempts)",
                    ])
                }
                continue
            }
            let orderID = order.orderID
            let reason = "order store refused the order (code \(refused.code)): \(refused.message)"
            let outcome = try await redis.withConnection { connection throws(RedisError) in
                try Ledger(connection: connection).failOrder(saleID: saleID, orderID: orderID, reason: String(reason.prefix(300)))
            }
            logger.error("order failed permanently in MongoDB; compensated", metadata: [
                "sale": "\(saleID)", "order": "\(orderID)", "code": "\(refused.code)", "outcome": "\(outcome)",
            ])
            pass.compensated += 1
        }
        let done = entries.map(\.id).filter { !retry.contains($0) && !held.contains($0) }
        try await acknowledge(stream: stream, ids: done, delete: true)
        state.withLock { state in
            for id in done { state.held.removeValue(forKey: HeldEntry(saleID: saleID, entryID: id)) }
            state.status.heldCancellations = state.held.count
        }
        pass.orders += writable.count - result.writeErrors.count
        pass.deferred += retry.count
        pass.heldCancellations += held.count
    }

    /// Records one more refusal of a held cancellation and when to try it again (capped exponential backoff,
    /// jittered in its upper half so that the interval grows). Answers the attempts so far.
    private func hold(_ entry: HeldEntry) -> Int {
        let base = configuration.backoffBaseMilliseconds
        let cap = configuration.backoffCapMilliseconds
        return state.withLock { state in
            let attempts = (state.held[entry]?.attempts ?? 0) + 1
            let ceiling = max(min(cap, base << min(attempts - 1, 20)), 2)
            let delay = ceiling / 2 + Int.random(in: 0...ceiling / 2)
            state.held[entry] = HeldCancellation(attempts: attempts, retryAt: .now + .milliseconds(delay))
            state.status.heldCancellations = state.held.count
            return attempts
        }
    }

    /// Stock events are a log: one MongoDB refuses for good is reported and dropped (there is nothing to
    /// compensate); the stream keeps every entry (acknowledged, not deleted) for the ledger's own readers.
    private func drainStockLog(saleID: String, entries: [StreamEntry], into pass: inout Pass) async throws {
        let present = entries.filter { !$0.fields.isEmpty }
        let result = try await mongo.bulkWrite(OutboxDocuments.stockEvents, present.map { OutboxDocuments.stockEventWrite(saleID: saleID, entry: $0) })
        var retry: Set<String> = []
        for refused in result.writeErrors {
            precondition(refused.index >= 0 && refused.index < present.count, "write error index outside the batch")
            if refused.isTransient {
                retry.insert(present[refused.index].id)
            } else {
                logger.error("MongoDB refused a stock event; dropped", metadata: ["sale": "\(saleID)", "code": "\(refused.code)", "error": "\(refused.message)"])
            }
        }
        let stockLog = LedgerKeys(saleID: saleID).stockLog
        try await acknowledge(stream: stockLog, ids: entries.map(\.id).filter { !retry.contains($0) }, delete: false)
        try await trim(stockLog: stockLog, acknowledgedUpTo: entries.last?.id)
        pass.stockEvents += entries.count - retry.count
        pass.deferred += retry.count
    }

    /// Creates the consumer groups of a sale's streams once per process (`MKSTREAM`: the outbox may be empty),
    /// in one script that checks the sale still exists (ensure_groups.lua). False when the sale is gone.
    private func ensureGroups(_ keys: LedgerKeys) async throws -> Bool {
        guard !state.withLock({ $0.groupsCreated.contains(keys.saleID) }) else { return true }
        let arguments = RedisCommand([configuration.group])
        let exists = try await redis.withConnection { connection throws(RedisError) -> Bool in
            let reply = try connection.evaluate(LedgerScripts.ensureGroups, keys: keys.retained, arguments: arguments)
            if let message = reply.errorMessage { throw RedisError(.serverError, "ensure_groups: \(message)") }
            return reply.array?.first?.string == "OK"
        }
        if exists { state.withLock { _ = $0.groupsCreated.insert(keys.saleID) } }
        return exists
    }

    /// This consumer's pending entries first (a failed earlier write, or entries claimed from a dead
    /// consumer), then new ones: at most `batchSize`. Pending entries in `skipping` (held cancellations not due
    /// yet) are left out, so they never hold back the entries after them (at most 4 pages of pending entries
    /// are looked through).
    private func readBatch(stream: String, skipping: Set<String> = []) async throws -> [StreamEntry] {
        let configuration = self.configuration
        return try await redis.withConnection { connection throws(RedisError) -> [StreamEntry] in
            var claim = RedisCommand("XAUTOCLAIM", stream, configuration.group, configuration.consumer)
            claim.append(configuration.claimIdleMilliseconds)
            claim.append("0-0")
            claim.append("COUNT")
            claim.append(configuration.batchSize)
            try connection.send(claim).throwingServerError()
            func read(from start: String) throws(RedisError) -> [StreamEntry] {
                var read = RedisCommand("XREADGROUP", "GROUP", configuration.group, configuration.consumer, "COUNT")
                read.append(configuration.batchSize)
                read.append("STREAMS")
                read.append(stream)
                read.append(start)
                // [[stream, [[id, fields], ...]]] or nil when nothing is new.
                return StreamEntry.parse(try connection.send(read).throwingServerError().array?.first?.array?.last)
            }
            var after = "0"
            for _ in 0..<4 {
                let pending = try read(from: after)
                let due = pending.filter { !skipping.contains($0.id) }
                if !due.isEmpty { return due }
                guard pending.count == configuration.batchSize, let last = pending.last?.id else { break }
                after = last
            }
            return try read(from: ">")
        }
    }

    /// Trims the stock log below the oldest entry still pending in the group (any consumer's), or below
    /// the newest acknowledged one when nothing is pending. Entries above the group's last delivered id
    /// are never touched: every entry below the threshold was delivered and acknowledged.
    private func trim(stockLog: String, acknowledgedUpTo newest: String?) async throws {
        guard let newest else { return }
        let group = configuration.group
        try await redis.withConnection { connection throws(RedisError) in
            // XPENDING summary: [count, smallest id, greatest id, consumers].
            let pending = try connection.send(RedisCommand("XPENDING", stockLog, group)).throwingServerError().array ?? []
            let count = pending.first?.integer ?? 0
            let threshold = count > 0 ? (pending.count > 1 ? pending[1].string : nil) ?? newest : newest
            try connection.send(RedisCommand("XTRIM", stockLog, "MINID", threshold)).throwingServerError()
        }
    }

    private func acknowledge(stream: String, ids: [String], delete: Bool) async throws {
        guard !ids.isEmpty else { return }
        let group = configuration.group
        try await redis.withConnection { connection throws(RedisError) in
            var ack = RedisCommand("XACK", stream, group)
            for id in ids { ack.append(id) }
            var commands = [ack]
            if delete {
                var remove = RedisCommand("XDEL", stream)
                for id in ids { remove.append(id) }
                commands.append(remove)
            }
            for reply in try connection.pipeline(commands) { try reply.throwingServerError() }
        }
    }

    private func write(_ collection: String, _ writes: [MongoWrite]) async throws {
        let result = try await mongo.bulkWrite(collection, writes)
        if let refused = result.writeErrors.first {
            throw MongoError(kind: refused.isTransient ? .transient : .permanent, code: refused.code, message: "\(collection): \(refused.message)")
        }
    }
}
