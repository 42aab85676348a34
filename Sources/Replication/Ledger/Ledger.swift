import Foundation
import ReservationEngine

/// Typed calls to the ledger scripts over one blocking ``RedisConnection``.
///
/// Runs on the thread that owns the connection (the group committer's, or a ``RedisClient``'s).
public struct Ledger {
    public let connection: RedisConnection

    public init(connection: RedisConnection) {
        self.connection = connection
    }

    /// Makes sure every script is loaded on this connection's server (on every master of a cluster), and
    /// that registries an earlier version wrote are moved over (readiness means both).
    public func loadScripts() throws(RedisError) {
        for script in LedgerScripts.all { try connection.ensureLoaded(script) }
        try migrateRegistries()
    }

    /// Moves the registries across sales from their names before they shared a hash tag (``LedgerKeys/legacyRegistries``)
    /// into ``LedgerKeys/registries``, when a ledger written by an earlier version has them; answers the entries
    /// moved. Also run by every readiness check, so that what an instance of the earlier version writes during a
    /// rolling upgrade is moved too. Not on Redis Cluster: the old names span slots there, and no earlier version
    /// ran on one.
    @discardableResult
    public func migrateRegistries() throws(RedisError) -> Int {
        guard connection.configuration.clusterNodes.isEmpty else { return 0 }
        let reply = try connection.evaluate(LedgerScripts.migrateRegistries, keys: LedgerKeys.legacyRegistries + LedgerKeys.registries)
        if let message = reply.errorMessage { throw RedisError(.serverError, "migrate_registries: \(message)") }
        return Int(reply.integer ?? 0)
    }

    // MARK: Sales

    /// Creates the sale; false when a sale with this id exists.
    ///
    /// The registries (which no script touches with the sale's keys: they are in a slot of their own) are written first, and both
    /// writes are idempotent. So a failure between the two steps leaves at worst a registry entry for a
    /// sale that does not exist yet (its readers skip it, and the caller's retry creates the sale), never a
    /// sale that the registries miss (which would never be reconciled or drained to MongoDB). Once the sale
    /// exists they are written again: a drainer's cleanup of an earlier, expired sale with the same id may have
    /// removed them between the two steps (it never removes them once meta exists), and the registry of all
    /// sales then carries this sale's start.
    public func createSale(_ definition: SaleDefinition) throws(RedisError) -> Bool {
        var all = RedisCommand("ZADD", LedgerKeys.allSales, "NX")
        all.append(definition.startsAtMilliseconds)
        all.append(definition.id)
        for reply in try connection.pipeline([all, RedisCommand("SADD", LedgerKeys.activeSales, definition.id)]) {
            try reply.throwingServerError()
        }
        var arguments = RedisCommand()
        arguments.append(definition.id)
        arguments.append(definition.name)
        arguments.append(definition.stock)
        arguments.append(definition.startsAtMilliseconds)
        arguments.append(definition.endsAtMilliseconds)
        arguments.append(definition.perCustomerLimit)
        let reply = try run(LedgerScripts.createSale, saleID: definition.id, arguments)
        switch try Self.tag(reply) {
        case "OK":
            var listed = RedisCommand("ZADD", LedgerKeys.allSales)
            listed.append(definition.startsAtMilliseconds)
            listed.append(definition.id)
            for reply in try connection.pipeline([listed, RedisCommand("SADD", LedgerKeys.activeSales, definition.id)]) {
                try reply.throwingServerError()
            }
            return true
        case "EXISTS": return false
        default: throw Self.unexpected(reply, LedgerScripts.createSale)
        }
    }

    /// Closes the sale if its end passed or it sold out (`auto`), or forces a close with the reason `mode`.
    public func closeSale(saleID: String, mode: String = "auto") throws(RedisError) -> (SaleStatus, ClosedReason?)? {
        try closeSaleReportingChange(saleID: saleID, mode: mode).map { ($0.status, $0.reason) }
    }

    /// As `closeSale`, and whether this call is the one that closed the sale.
    public func closeSaleReportingChange(saleID: String, mode: String) throws(RedisError) -> (status: SaleStatus, reason: ClosedReason?, closedNow: Bool)? {
        var arguments = RedisCommand()
        arguments.append(mode)
        let reply = try run(LedgerScripts.closeSale, saleID: saleID, arguments)
        guard let elements = reply.array, elements.count == 3 else {
            if (try? Self.tag(reply)) == "NOT_FOUND" { return nil }
            throw Self.unexpected(reply, LedgerScripts.closeSale)
        }
        guard let status = elements[0].string.flatMap(SaleStatus.init(rawValue:)) else {
            throw Self.unexpected(reply, LedgerScripts.closeSale)
        }
        return (status, elements[1].string.flatMap(ClosedReason.init(rawValue:)), elements[2].integer == 1)
    }

    /// One page of the registry of sales, latest start first (ties by id, descending): up to `count`
    /// `(id, startsAt ms)` after `cursor` (the last entry of the previous page). A cursor whose sale has left
    /// the registry resumes after its start time.
    public func salePage(after cursor: (id: String, startsAtMilliseconds: Int64)?, count: Int) throws(RedisError) -> [(id: String, startsAtMilliseconds: Int64)] {
        precondition(count > 0 && count <= 1_000, "a page is 1...1000 sales")
        var first = 0
        if let cursor {
            let replies = try connection.pipeline([
                RedisCommand("ZREVRANK", LedgerKeys.allSales, cursor.id),
                RedisCommand("ZSCORE", LedgerKeys.allSales, cursor.id),
                RedisCommand("ZCOUNT", LedgerKeys.allSales, "(\(cursor.startsAtMilliseconds)", "+inf"),
            ])
            let stillThere = replies[1].string.flatMap(Double.init).map { Int64($0) == cursor.startsAtMilliseconds } ?? false
            if stillThere, let rank = try replies[0].throwingServerError().integer {
                first = Int(rank) + 1
            } else {
                first = Int(try replies[2].throwingServerError().integer ?? 0)
            }
        }
        var range = RedisCommand("ZREVRANGE", LedgerKeys.allSales)
        range.append(first)
        range.append(first + count - 1)
        range.append("WITHSCORES")
        let flat = try connection.send(range).throwingServerError().array ?? []
        var page: [(id: String, startsAtMilliseconds: Int64)] = []
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            guard let id = flat[index].string, let score = flat[index + 1].string.flatMap(Double.init) else { continue }
            page.append((id, Int64(score)))
        }
        return page
    }

    /// Entries of the sale not yet written to MongoDB, in the outbox and the commit log (the drainer deletes
    /// what it wrote; a commit-log entry is one batch of orders).
    public func outboxBacklog(saleID: String) throws(RedisError) -> Int {
        let keys = LedgerKeys(saleID: saleID)
        let replies = try connection.pipeline([RedisCommand("XLEN", keys.outbox), RedisCommand("XLEN", keys.commits)])
        var total = 0
        for reply in replies { total += Int(try reply.throwingServerError().integer ?? 0) }
        return total
    }

    public func snapshot(saleID: String) throws(RedisError) -> LedgerSnapshot? {
        let reply = try run(LedgerScripts.snapshot, saleID: saleID, RedisCommand())
        if (try? Self.tag(reply)) == "NOT_FOUND" { return nil }
        guard let parts = reply.array, parts.count == 8,
              let metaFlat = parts[0].array, let pool = parts[1].integer, let sold = parts[2].integer,
              let leasesFlat = parts[3].array, let waitlist = parts[4].integer, let statsFlat = parts[5].array,
              let buyers = parts[6].integer, let now = parts[7].integer
        else { throw Self.unexpected(reply, LedgerScripts.snapshot) }
        let meta = Self.pairs(metaFlat)
        guard let stock = meta["stock"].flatMap(Int.init), let start = meta["startMs"].flatMap(Int64.init),
              let end = meta["endMs"].flatMap(Int64.init), let limit = meta["limit"].flatMap(Int.init),
              let status = meta["status"].flatMap(SaleStatus.init(rawValue:))
        else { throw Self.unexpected(reply, LedgerScripts.snapshot) }
        var leases: [LeaseRecord] = []
        for (shardID, json) in Self.pairs(leasesFlat).sorted(by: { $0.key < $1.key }) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
                  let owner = object["o"] as? String, let fence = (object["f"] as? NSNumber)?.int64Value,
                  let remaining = (object["r"] as? NSNumber)?.intValue, let expires = (object["e"] as? NSNumber)?.int64Value
            else { throw Self.unexpected(reply, LedgerScripts.snapshot) }
            leases.append(LeaseRecord(shardID: shardID, owner: owner, fence: fence, remaining: remaining, expiresAtMilliseconds: expires))
        }
        var timestamps: [String: Int64] = [:]
        for key in ["createdAtMs", "openedAtMs", "soldOutAtMs", "closedAtMs"] {
            if let value = meta[key].flatMap(Int64.init) { timestamps[key] = value }
        }
        return LedgerSnapshot(
            definition: SaleDefinition(id: meta["id"] ?? saleID, name: meta["name"] ?? "", stock: stock,
                                       startsAtMilliseconds: start, endsAtMilliseconds: end, perCustomerLimit: limit),
            status: status,
            closedReason: meta["closedReason"].flatMap(ClosedReason.init(rawValue:)),
            pool: Int(pool), sold: Int(sold), leases: leases, waitlist: Int(waitlist), buyers: Int(buyers),
            statistics: Self.pairs(statsFlat).compactMapValues { Int64($0) },
            timestamps: timestamps, ledgerNowMilliseconds: now
        )
    }

    // MARK: Leases

    /// Leases units: the adaptive share of the pool, at least `minimumUnits` (one order), and at most
    /// `demandUnits` when given (what this instance's waiting customers need). `arrivals` are this instance's
    /// waiting customers in arrival order (see ``ArrivalPoint``): while another instance's customers arrived
    /// earlier (by more than `arrivalToleranceMicroseconds`) the answer is `.wait`, otherwise a lease for exactly
    /// those who arrived before them, within the tolerance (see acquire_lease.lua). With other instances
    /// present and `fleetOrderDelayMicroseconds` > 0, only customers who arrived at least that long ago.
    /// `instanceClockMicroseconds`: the clock the arrivals were stamped on, read as the request is sent; when it
    /// is more than a second off the ledger's, the arrivals are moved onto the ledger's clock by that skew.
    public func acquireLease(saleID: String, owner: String, shardID: String, sizing: ShardSizing, ttlMilliseconds: Int, minimumUnits: Int = 1,
                             demandUnits: Int? = nil, arrivals: [ArrivalPoint] = [], arrivalToleranceMicroseconds: Int = 0,
                             fleetOrderDelayMicroseconds: Int = 0, instanceClockMicroseconds: Int64? = nil) throws(RedisError) -> LeaseAcquisition {
        precondition(minimumUnits >= 1 && (demandUnits ?? 1) >= 1)
        precondition(arrivalToleranceMicroseconds >= 0 && fleetOrderDelayMicroseconds >= 0)
        precondition((instanceClockMicroseconds ?? 1) > 0, "a clock reading is microseconds since 1970")
        precondition(arrivals.count <= ArrivalPoint.maximumPerLease, "at most \(ArrivalPoint.maximumPerLease) arrival points per lease")
        assert(zip(arrivals, arrivals.dropFirst()).allSatisfy { $0.arrivalMicroseconds <= $1.arrivalMicroseconds && $0.cumulativeUnits < $1.cumulativeUnits },
               "arrival points ascend")
        var arguments = RedisCommand()
        arguments.append(owner)
        arguments.append(shardID)
        arguments.append(sizing.maxShardUnits)
        arguments.append(sizing.spreadFactor)
        arguments.append(ttlMilliseconds)
        arguments.append(minimumUnits)
        arguments.append(demandUnits ?? 0)
        arguments.append(arrivalToleranceMicroseconds)
        arguments.append(fleetOrderDelayMicroseconds)
        arguments.append(arrivals.count)
        for point in arrivals {
            arguments.append(point.arrivalMicroseconds)
            arguments.append(point.cumulativeUnits)
        }
        if let instanceClockMicroseconds { arguments.append(instanceClockMicroseconds) }
        let reply = try run(LedgerScripts.acquireLease, saleID: saleID, arguments)
        let elements = reply.array ?? []
        switch try Self.tag(reply) {
        case "OK":
            guard elements.count == 5, let fence = elements[1].integer, let units = elements[2].integer,
                  let expires = elements[3].integer, let now = elements[4].integer, units > 0, fence > 0
            else { throw Self.unexpected(reply, LedgerScripts.acquireLease) }
            return .granted(fence: fence, units: Int(units), expiresAtMilliseconds: expires, ledgerNowMilliseconds: now)
        case "EMPTY":
            guard elements.count == 4, let sold = elements[1].integer, let leased = elements[2].integer, let waitlist = elements[3].integer
            else { throw Self.unexpected(reply, LedgerScripts.acquireLease) }
            return .empty(sold: Int(sold), leased: Int(leased), waitlist: Int(waitlist))
        case "WAIT":
            guard elements.count == 2, let arrival = elements[1].integer else { throw Self.unexpected(reply, LedgerScripts.acquireLease) }
            return .wait(earliestArrivalMicroseconds: arrival)
        case "CLOSED": return .closed(try Self.reason(reply))
        case "NOT_STARTED": return .notStarted(millisecondsUntilStart: elements.count > 1 ? elements[1].integer ?? 0 : 0)
        case "NOT_FOUND": return .notFound
        default: throw Self.unexpected(reply, LedgerScripts.acquireLease)
        }
    }

    /// Renews the given leases of `owner`; answers the global view and, per lease, its remaining units
    /// (nil when the lease was lost). Nil overall when the sale does not exist.
    public func renewLeases(saleID: String, owner: String, leases: [(shardID: String, fence: Int64)], ttlMilliseconds: Int) throws(RedisError) -> (LedgerView, [Int?])? {
        precondition(leases.count <= 10_000, "renew at most 10000 leases per call")
        var arguments = RedisCommand()
        arguments.append(owner)
        arguments.append(ttlMilliseconds)
        arguments.append(leases.count)
        for lease in leases {
            arguments.append(lease.shardID)
            arguments.append(lease.fence)
        }
        let reply = try run(LedgerScripts.renewLeases, saleID: saleID, arguments)
        if (try? Self.tag(reply)) == "NOT_FOUND" { return nil }
        guard let parts = reply.array, parts.count == 9,
              let status = parts[0].string.flatMap(SaleStatus.init(rawValue:)),
              let sold = parts[2].integer, let pool = parts[3].integer, let leased = parts[4].integer,
              let waitlist = parts[5].integer, let stock = parts[6].integer, let now = parts[7].integer,
              let results = parts[8].array, results.count == leases.count
        else { throw Self.unexpected(reply, LedgerScripts.renewLeases) }
        let view = LedgerView(
            status: status, closedReason: parts[1].string.flatMap(ClosedReason.init(rawValue:)),
            stock: Int(stock), sold: Int(sold), pool: Int(pool), leased: Int(leased), waitlist: Int(waitlist),
            ledgerNowMilliseconds: now
        )
        let remaining: [Int?] = results.map { reply in
            guard let value = reply.integer, value >= 0 else { return nil }
            return Int(value)
        }
        return (view, remaining)
    }

    /// Returns a lease's remaining units to the pool. Nil when the lease was already lost.
    public func returnLease(saleID: String, owner: String, shardID: String, fence: Int64) throws(RedisError) -> Int? {
        var arguments = RedisCommand()
        arguments.append(owner)
        arguments.append(shardID)
        arguments.append(fence)
        let reply = try run(LedgerScripts.returnLease, saleID: saleID, arguments)
        switch try Self.tag(reply) {
        case "OK":
            guard let units = reply.array?.dropFirst().first?.integer else { throw Self.unexpected(reply, LedgerScripts.returnLease) }
            return Int(units)
        case "LOST", "NOT_FOUND": return nil
        default: throw Self.unexpected(reply, LedgerScripts.returnLease)
        }
    }

    /// Revokes the leases of `owner` (all leases when nil); answers (revoked leases, returned units).
    public func revokeLeases(saleID: String, owner: String?) throws(RedisError) -> (leases: Int, units: Int)? {
        var arguments = RedisCommand()
        arguments.append(owner ?? "")
        let reply = try run(LedgerScripts.revokeLeases, saleID: saleID, arguments)
        if (try? Self.tag(reply)) == "NOT_FOUND" { return nil }
        guard let elements = reply.array, elements.count == 2, let leases = elements[0].integer, let units = elements[1].integer else {
            throw Self.unexpected(reply, LedgerScripts.revokeLeases)
        }
        return (Int(leases), Int(units))
    }

    // MARK: Orders

    /// Whether JSON (and the scripts' cjson) writes `text` as it is between quotes: printable ASCII other
    /// than `"`, `\` and `/`. A batch whose strings all are lets `commit_batch.lua` skip its JSON escaper.
    /// Checked on the contiguous bytes without an early exit, so that the loop vectorises: a batch checks every
    /// order's strings (the sealed delivery alone is about 200 bytes).
    static func isPlainJSONText(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var refused: UInt8 = 0
            for byte in bytes {
                let unprintable = byte &- 0x20 > 0x7E - 0x20  // below 0x20 (wraps around) or above 0x7E
                let escaped = byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/")
                refused |= (unprintable || escaped) ? 1 : 0
            }
            return refused == 0
        }
    }

    /// A lease named by a commit batch's orders (see ``encodeCommit(owner:_:replay:)``).
    private struct CommitLease: Hashable {
        var shardID: String
        var fence: Int64
    }

    /// Encodes the arguments of one commit batch (all orders of one sale). `replay`: see ``commit(saleID:owner:_:replay:)``.
    ///
    /// The leases the orders were taken from go first, each `shardId, fence` pair once; every order then names its
    /// lease by its 1-based index (see `commit_batch.lua`), so the script interns and checks a lease's strings once
    /// per batch rather than once per order.
    public static func encodeCommit(owner: String, _ commits: some Collection<PendingCommit>, replay: Bool = true) -> RedisCommand {
        var leaseIndex: [CommitLease: Int] = [:]
        var leases: [CommitLease] = []
        var orderLeases: [Int] = []
        orderLeases.reserveCapacity(commits.count)
        var plain = isPlainJSONText(owner)
        for commit in commits {
            let lease = CommitLease(shardID: commit.shardID, fence: commit.fence)
            if let index = leaseIndex[lease] {
                orderLeases.append(index)
            } else {
                leases.append(lease)
                leaseIndex[lease] = leases.count
                orderLeases.append(leases.count)
            }
            if plain {
                plain = isPlainJSONText(commit.orderID) && isPlainJSONText(commit.shardID) && isPlainJSONText(commit.customerID)
                    && isPlainJSONText(commit.idempotencyKey) && isPlainJSONText(commit.delivery)
            }
        }
        assert(orderLeases.count == commits.count && leases.count == leaseIndex.count, "every order names one lease")
        var arguments = RedisCommand()
        arguments.reserveCapacity(arguments: 5 + 2 * leases.count + commits.count * 6, bytes: 32 + leases.count * 32 + commits.count * 192)
        arguments.append(owner)
        arguments.append(commits.count)
        arguments.append(plain ? "1" : "0")
        arguments.append(replay ? "1" : "0")
        arguments.append(leases.count)
        for lease in leases {
            arguments.append(lease.shardID)
            arguments.append(lease.fence)
        }
        for (commit, lease) in zip(commits, orderLeases) {
            arguments.append(commit.orderID)
            arguments.append(lease)
            arguments.append(commit.customerID)
            arguments.append(commit.quantity)
            arguments.append(commit.idempotencyKey)
            arguments.append(commit.delivery)
        }
        return arguments
    }

    /// Commits a batch of orders of one sale in one `EVALSHA`; one outcome per order, in order.
    ///
    /// `replay`: the batch may have been applied already (sent again after an unknown outcome), so the script
    /// looks its order ids up and answers those it holds as duplicates. False only for a batch never sent
    /// before, whose ids are new (96 random bits each): the script then skips that read (the group committer's
    /// first attempt).
    public func commit(saleID: String, owner: String, _ commits: some Collection<PendingCommit>, replay: Bool = true) throws(RedisError) -> [CommitOutcome] {
        precondition(!commits.isEmpty, "commit at least one order")
        let reply = try run(LedgerScripts.commitBatch, saleID: saleID, Self.encodeCommit(owner: owner, commits, replay: replay))
        guard let results = reply.array, results.count == commits.count else {
            throw Self.unexpected(reply, LedgerScripts.commitBatch)
        }
        var outcomes: [CommitOutcome] = []
        outcomes.reserveCapacity(results.count)
        for result in results {
            // A committed order is answered by its creation time alone.
            if case .integer(let created) = result {
                outcomes.append(.committed(createdAtMilliseconds: created))
                continue
            }
            let elements = result.array ?? []
            switch try Self.tag(result) {
            case "DUP":
                outcomes.append(.duplicate(try Self.record(result)))
            case "WAITING":
                guard elements.count == 2, let position = elements[1].integer else { throw Self.unexpected(result, LedgerScripts.commitBatch) }
                outcomes.append(.waitlisted(position: Int(position)))
            case "LIMIT":
                outcomes.append(.limitExceeded(purchased: Int(elements.count == 2 ? elements[1].integer ?? 0 : 0)))
            case "FENCED":
                outcomes.append(.fenced)
            case "CLOSED":
                outcomes.append(.closed(try Self.reason(result)))
            case "NOT_FOUND":
                outcomes.append(.notFound)
            default:
                throw Self.unexpected(result, LedgerScripts.commitBatch)
            }
        }
        return outcomes
    }

    public func joinWaitlist(saleID: String, owner: String, customerID: String, quantity: Int, orderID: String, idempotencyKey: String, delivery: String) throws(RedisError) -> WaitlistOutcome {
        var arguments = RedisCommand()
        arguments.append(customerID)
        arguments.append(quantity)
        arguments.append(orderID)
        arguments.append(idempotencyKey)
        arguments.append(delivery)
        arguments.append(owner)
        let reply = try run(LedgerScripts.joinWaitlist, saleID: saleID, arguments)
        let elements = reply.array ?? []
        switch try Self.tag(reply) {
        case "WAITING":
            guard elements.count == 2, let position = elements[1].integer else { throw Self.unexpected(reply, LedgerScripts.joinWaitlist) }
            return .waiting(position: Int(position))
        case "SERVED":
            let record = try Self.record(reply)
            try requireReplicas()
            return .served(record)
        case "DUP":
            let record = try Self.record(reply)
            try requireReplicas()
            return .duplicate(record)
        case "RETRY": return .retry
        case "LIMIT": return .limitExceeded(purchased: Int(elements.count == 2 ? elements[1].integer ?? 0 : 0))
        case "INSUFFICIENT": return .insufficientStock(unsold: Int(elements.count == 2 ? elements[1].integer ?? 0 : 0))
        case "CLOSED": return .closed(try Self.reason(reply))
        case "NOT_STARTED": return .notStarted(millisecondsUntilStart: elements.count > 1 ? elements[1].integer ?? 0 : 0)
        case "NOT_FOUND": return .notFound
        default: throw Self.unexpected(reply, LedgerScripts.joinWaitlist)
        }
    }

    /// The textbook order path (comparison only): one script call per order, straight against the pool.
    public func directOrder(saleID: String, orderID: String, customerID: String, quantity: Int, idempotencyKey: String, delivery: String) throws(RedisError) -> DirectOrderOutcome {
        var arguments = RedisCommand()
        arguments.append(orderID)
        arguments.append(customerID)
        arguments.append(quantity)
        arguments.append(idempotencyKey)
        arguments.append(delivery)
        let reply = try run(LedgerScripts.directOrder, saleID: saleID, arguments)
        let elements = reply.array ?? []
        switch try Self.tag(reply) {
        case "OK":
            guard elements.count == 2, let created = elements[1].integer else { throw Self.unexpected(reply, LedgerScripts.directOrder) }
            return .committed(createdAtMilliseconds: created)
        case "DUP": return .duplicate(try Self.record(reply))
        case "WAITING":
            guard elements.count == 2, let position = elements[1].integer else { throw Self.unexpected(reply, LedgerScripts.directOrder) }
            return .waitlisted(position: Int(position))
        case "LIMIT": return .limitExceeded(purchased: Int(elements.count == 2 ? elements[1].integer ?? 0 : 0))
        case "SOLD_OUT": return .closed(.soldOut)
        case "INSUFFICIENT": return .insufficientStock(unsold: Int(elements.count == 2 ? elements[1].integer ?? 0 : 0))
        case "CLOSED": return .closed(try Self.reason(reply))
        case "NOT_STARTED": return .notStarted(millisecondsUntilStart: elements.count > 1 ? elements[1].integer ?? 0 : 0)
        case "NOT_FOUND": return .notFound
        default: throw Self.unexpected(reply, LedgerScripts.directOrder)
        }
    }

    /// Cancels an order; `customerID` nil means an admin cancels any order.
    public func cancel(saleID: String, orderID: String, customerID: String?) throws(RedisError) -> CancelOutcome {
        var arguments = RedisCommand()
        arguments.append(orderID)
        arguments.append(customerID ?? "")
        let reply = try run(LedgerScripts.cancelOrder, saleID: saleID, arguments)
        switch try Self.tag(reply) {
        case "OK": return .cancelled(try Self.record(reply))
        case "NOT_FOUND": return .notFound
        case "CLOSED": return .closed(try Self.reason(reply))
        default: throw Self.unexpected(reply, LedgerScripts.cancelOrder)
        }
    }

    /// Every order of the sale, in no particular order (for tests, summaries and rebuilds; O(orders)).
    public func orders(saleID: String) throws(RedisError) -> [OrderRecord] {
        let reply = try connection.send(RedisCommand("HVALS", LedgerKeys(saleID: saleID).orders)).throwingServerError()
        guard let values = reply.array else { throw RedisError(.unexpectedReply, "HVALS answered \(reply)") }
        var records: [OrderRecord] = []
        records.reserveCapacity(values.count)
        for value in values {
            guard case .bulk(let json) = value else { throw RedisError(.unexpectedReply, "order record is not a string") }
            records.append(try OrderRecord(ledgerJSON: json))
        }
        return records
    }

    /// The records of these orders that the ledger holds, by id (one pipeline, `HMGET`s of at most 1,000 ids).
    public func orderRecords(saleID: String, ids: [String]) throws(RedisError) -> [String: OrderRecord] {
        guard !ids.isEmpty else { return [:] }
        let key = LedgerKeys(saleID: saleID).orders
        let chunks = stride(from: 0, to: ids.count, by: 1_000).map { ids[$0..<min($0 + 1_000, ids.count)] }
        let replies = try connection.pipeline(chunks.map { chunk in
            var command = RedisCommand("HMGET", key)
            for id in chunk { command.append(id) }
            return command
        })
        var records: [String: OrderRecord] = [:]
        records.reserveCapacity(ids.count)
        for (chunk, reply) in zip(chunks, replies) {
            let values = try reply.throwingServerError().array ?? []
            guard values.count == chunk.count else { throw RedisError(.unexpectedReply, "HMGET answered \(values.count) values for \(chunk.count) ids") }
            for (id, value) in zip(chunk, values) {
                guard case .bulk(let json) = value else { continue }
                records[id] = try OrderRecord(ledgerJSON: json)
            }
        }
        return records
    }

    /// One order, or nil.
    public func order(saleID: String, orderID: String) throws(RedisError) -> OrderRecord? {
        let reply = try connection.send(RedisCommand("HGET", LedgerKeys(saleID: saleID).orders, orderID)).throwingServerError()
        guard case .bulk(let json) = reply else { return nil }
        return try OrderRecord(ledgerJSON: json)
    }

    /// At most this many cancelled or failed orders of one customer are listed (the newest).
    public static let customerViewPastOrders = 50
    /// Orders that hold units are bounded by the per-customer limit (at most 100, see SaleDefinition).
    static let customerViewActiveOrders = 200

    /// A customer's orders in the sale (oldest first): every order that holds units (bounded by the
    /// per-customer limit) and the newest ``customerViewPastOrders`` cancelled or failed ones; and the
    /// waitlist position (1-based) if waiting. One pipeline: the customer's `users` entry (units and the ids
    /// of the orders holding them), the newest of their past orders, their waitlist rank; then the records.
    /// `saleExists` is false once the sale's keys are gone (retired after retention, or a replaced Redis): the
    /// empty lists then mean "not known here", never "no orders".
    public func customerView(saleID: String, customerID: String) throws(RedisError) -> (orders: [OrderRecord], waitlistPosition: Int?, saleExists: Bool) {
        let keys = LedgerKeys(saleID: saleID)
        // Past-order members are `<len>:<customer>|x|<createdAt>|<orderId>`; `}` sorts right after `|`.
        let prefix = "\(customerID.utf8.count):\(customerID)|"
        var past = RedisCommand("ZREVRANGEBYLEX", keys.customers, "(\(prefix)x}", "[\(prefix)x|", "LIMIT", "0")
        past.append(Self.customerViewPastOrders)
        let replies = try connection.pipeline([
            RedisCommand("HGET", keys.users, customerID), past, RedisCommand("ZRANK", keys.waitlist, customerID),
            RedisCommand("EXISTS", keys.meta),
        ])
        let saleExists = try replies[3].throwingServerError().integer == 1
        var ids: [String] = []
        if let entry = try replies[0].throwingServerError().string {
            guard let held = Self.entry(entry) else {
                throw RedisError(.unexpectedReply, "malformed customer entry in sale \(saleID)")
            }
            ids = held.orderIDs
        }
        for member in try replies[1].throwingServerError().array ?? [] {
            guard let member = member.string, let bar = member.lastIndex(of: "|") else {
                throw RedisError(.unexpectedReply, "malformed past-order entry in sale \(saleID)")
            }
            ids.append(String(member[member.index(after: bar)...]))
        }
        let position = try replies[2].throwingServerError().integer.map { Int($0) + 1 }
        guard !ids.isEmpty else { return ([], position, saleExists) }
        assert(ids.count <= Self.customerViewActiveOrders + Self.customerViewPastOrders)
        var command = RedisCommand("HMGET", keys.orders)
        for id in ids { command.append(id) }
        let records = try connection.send(command).throwingServerError().array ?? []
        var orders: [OrderRecord] = []
        for case .bulk(let json) in records { orders.append(try OrderRecord(ledgerJSON: json)) }
        orders.sort { ($0.createdAtMilliseconds, $0.orderID) < ($1.createdAtMilliseconds, $1.orderID) }
        return (orders, position, saleExists)
    }

    /// Units bought per customer.
    public func purchases(saleID: String) throws(RedisError) -> [String: Int] {
        try customerEntries(saleID: saleID).mapValues(\.units)
    }

    /// Every customer's `users` entry: the units they hold and the ids of the orders holding them.
    public func customerEntries(saleID: String) throws(RedisError) -> [String: (units: Int, orderIDs: [String])] {
        let reply = try connection.send(RedisCommand("HGETALL", LedgerKeys(saleID: saleID).users)).throwingServerError()
        var entries: [String: (units: Int, orderIDs: [String])] = [:]
        for (customer, text) in Self.pairs(reply.array ?? []) {
            guard let entry = Self.entry(text) else {
                throw RedisError(.unexpectedReply, "malformed customer entry in sale \(saleID)")
            }
            entries[customer] = entry
        }
        return entries
    }

    /// A `users` entry, `<units>` then ` <orderId>` per order holding them, then the key claims of those orders
    /// (`\n<key>\r<orderId>` each, left out here; see `read_entry` in the scripts' prelude); nil when malformed.
    static func entry(_ text: String) -> (units: Int, orderIDs: [String])? {
        let parts = text.prefix { $0 != "\n" }.split(separator: " ", omittingEmptySubsequences: false)
        guard let first = parts.first, let units = Int(first), units > 0, !parts.dropFirst().contains(where: \.isEmpty) else {
            return nil
        }
        return (units, parts.dropFirst().map(String.init))
    }

    // MARK: Helpers

    /// With `replicaAcks` configured, waits (`WAIT`) until that many replicas hold every write so far;
    /// throws ``RedisError/Code/notReplicated`` when they do not in time (nothing may be promised then).
    public func requireReplicas() throws(RedisError) {
        let configuration = connection.configuration
        guard configuration.replicaAcks > 0 else { return }
        var wait = RedisCommand("WAIT")
        wait.append(configuration.replicaAcks)
        wait.append(configuration.replicaAckTimeoutMilliseconds)
        let acknowledged = try connection.send(wait).throwingServerError().integer ?? 0
        guard acknowledged >= Int64(configuration.replicaAcks) else {
            // A primary whose replicas stopped answering may be cut off while the Sentinels (or the cluster)
            // promote one of them: resolve the primary (or read the slot map) again for the next command.
            if !configuration.sentinels.isEmpty || !configuration.clusterNodes.isEmpty { connection.close() }
            throw RedisError(.notReplicated, "\(acknowledged) of \(configuration.replicaAcks) replicas acknowledged within \(configuration.replicaAckTimeoutMilliseconds) ms")
        }
    }

    /// Withdraws this instance's first waiting customer from the arrival order across instances (see
    /// acquire_lease.lua): its customers were served, or left, without a lease that said so.
    public func clearArrivalHead(saleID: String, owner: String) throws(RedisError) {
        try connection.send(RedisCommand("HDEL", LedgerKeys(saleID: saleID).stats, "head:\(owner)")).throwingServerError()
    }

    /// ``requireReplicas()`` for writes made by any client: `WAIT` covers the writes of its own connection
    /// only, so this first makes one write of its own (a time stamp in the sale's statistics), which
    /// replicas receive after every write the primary made before it.
    public func requireReplicasOfEveryWrite(saleID: String) throws(RedisError) {
        guard connection.configuration.replicaAcks > 0 else { return }
        let time = try connection.send(RedisCommand("TIME")).throwingServerError().array?.first?.string ?? "0"
        try connection.send(RedisCommand("HSET", LedgerKeys(saleID: saleID).stats, "replicatedCheckAt", time)).throwingServerError()
        try requireReplicas()
    }

    private func run(_ script: RedisScript, saleID: String, _ arguments: RedisCommand) throws(RedisError) -> RedisReply {
        let reply = try connection.evaluate(script, keys: LedgerKeys(saleID: saleID).all, arguments: arguments)
        if case .error(let message) = reply {
            // A broken ledger invariant is a bug in these scripts: stop loudly in debug builds and tests.
            assert(!message.hasPrefix("INVARIANT"), "ledger invariant broken by \(script.name): \(message)")
            // The server was demoted (a failover): a replica refuses a script's first write, so nothing was
            // applied and the call may go to the new primary (the connection already dropped itself).
            if RedisConnection.isDemotion(message) {
                throw RedisError(.noPrimary, "\(script.name): \(message)")
            }
            throw RedisError(.serverError, "\(script.name): \(message)")
        }
        return reply
    }

    private static func tag(_ reply: RedisReply) throws(RedisError) -> String {
        guard let first = reply.array?.first?.string else {
            throw RedisError(.unexpectedReply, "ledger reply without a tag: \(reply)")
        }
        return first
    }

    private static func reason(_ reply: RedisReply) throws(RedisError) -> ClosedReason {
        guard let elements = reply.array, elements.count >= 2, let reason = elements[1].string.flatMap(ClosedReason.init(rawValue:)) else {
            throw RedisError(.unexpectedReply, "closed reply without a reason: \(reply)")
        }
        return reason
    }

    private static func record(_ reply: RedisReply) throws(RedisError) -> OrderRecord {
        guard let elements = reply.array, elements.count == 2, case .bulk(let json) = elements[1] else {
            throw RedisError(.unexpectedReply, "reply without an order record: \(reply)")
        }
        return try OrderRecord(ledgerJSON: json)
    }

    private static func unexpected(_ reply: RedisReply, _ script: RedisScript) -> RedisError {
        RedisError(.unexpectedReply, "\(script.name) answered \(reply)")
    }

    static func pairs(_ flat: [RedisReply]) -> [String: String] {
        var result: [String: String] = [:]
        var index = 0
        while index + 1 < flat.count {
            if let key = flat[index].string, let value = flat[index + 1].string { result[key] = value }
            index += 2
        }
        return result
    }
}
