import Logging
import ReservationEngine
import Synchronization

private let shardSequence = Atomic<Int>(0)
/// Distinguishes this process from earlier ones of the same instance id: a restarted instance must never
/// name a shard like a lease its previous incarnation still holds in the ledger.
private let incarnation = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 16)

extension ReservationService {
    /// Gets another lease for the sale. Single flight: concurrent callers wait for the one request.
    /// `demandUnits` caps the lease at what this instance's customers need now (nil: the adaptive share).
    /// `arrivals`: the parked customers in arrival order, so that across instances units follow arrival.
    func refill(sale: LocalSale, minimumUnits: Int = 1, demandUnits: Int? = nil, arrivals: [ArrivalPoint] = []) async -> LocalSale.RefillResult {
        let isLeader = sale.state.withLock { state -> Bool in
            if state.refillWaiters != nil { return false }
            state.refillWaiters = []
            return true
        }
        guard isLeader else {
            return await withCheckedContinuation { continuation in
                let registered = sale.state.withLock { state -> Bool in
                    guard state.refillWaiters != nil else { return false }
                    state.refillWaiters!.append(continuation)
                    return true
                }
                if !registered { continuation.resume(returning: .retry) }
            }
        }
        let result = await acquireLease(sale: sale, minimumUnits: minimumUnits, demandUnits: demandUnits, arrivals: arrivals)
        let waiters = sale.state.withLock { state in
            defer { state.refillWaiters = nil }
            return state.refillWaiters ?? []
        }
        for waiter in waiters { waiter.resume(returning: result) }
        return result
    }

    private func acquireLease(sale: LocalSale, minimumUnits: Int, demandUnits: Int?, arrivals: [ArrivalPoint]) async -> LocalSale.RefillResult {
        // Bound the leases one instance sells from at once. Drained ones do not count (the reconciler
        // retires them); leases whose few units are too few for large orders do, up to a hard cap.
        let sellingWithUnits = sale.state.withLock { state in
            state.slots.values.filter { $0.machine.isSelling && ($0.bucket?.available ?? 0) > 0 }.count
        }
        if sellingWithUnits >= configuration.maxLeasesPerSale * 16 {
            return .retry
        }
        let saleID = sale.definition.id
        let owner = configuration.instanceID
        let shardID = "\(owner)#\(incarnation).\(shardSequence.add(1, ordering: .relaxed).newValue)"
        let sizing = configuration.shardSizing
        let ttl = configuration.leaseTTLMilliseconds
        let tolerance = configuration.arrivalToleranceMicroseconds
        let delay = configuration.fleetOrderDelayMicroseconds
        let ownClock = configuration.arrivalsOnOwnClock
        let sentAt = monotonicMilliseconds
        var acquired: LeaseAcquisition?
        // Twice at most: a server that was demoted (a failover) refused the script without applying it, and
        // the second call goes to the new primary (the connection waits up to a second for the Sentinels to
        // name it), so the customers waiting for this lease are served instead of told to retry.
        for attempt in 1...2 where acquired == nil {
            do {
                acquired = try await committer.perform(saleID: saleID) { ledger throws(RedisError) in
                    // the clock the arrivals were stamped on, read as the request leaves: the ledger corrects its skew
                    try ledger.acquireLease(saleID: saleID, owner: owner, shardID: shardID, sizing: sizing, ttlMilliseconds: ttl,
                                            minimumUnits: minimumUnits, demandUnits: demandUnits, arrivals: arrivals,
                                            arrivalToleranceMicroseconds: tolerance, fleetOrderDelayMicroseconds: delay,
                                            instanceClockMicroseconds: ownClock ? wallClockMicroseconds() : nil)
                }
            } catch where error.code == .noPrimary && attempt == 1 {
                continue
            } catch {
                return .unavailable(error)
            }
        }
        guard let acquisition = acquired else { preconditionFailure("the second attempt returns or throws") }
        switch acquisition {
        case .granted(let fence, let units, _, _):
            var machine = LeaseStateMachine(renewMarginMilliseconds: Int64(configuration.leaseRenewMarginMilliseconds))
            let grant = LeaseStateMachine.Grant(shardID: shardID, fence: fence, units: units,
                                                deadlineMilliseconds: sentAt + Int64(ttl - configuration.leaseSafetyMarginMilliseconds))
            guard case .openBucket = machine.granted(grant) else { preconditionFailure("a grant opens a bucket") }
            let bucket = TokenBucket(shardID: shardID, fence: fence, units: units)
            sale.state.withLock { state in
                state.slots[shardID] = LocalSale.Slot(machine: machine, bucket: bucket, takenAtLastTick: 0, ledgerRemaining: units)
                state.lastGrantUnits = units
            }
            sale.publish(bucket)
            logger.debug("lease granted", metadata: ["sale": "\(saleID)", "shard": "\(shardID)", "fence": "\(fence)", "units": "\(units)"])
            return .granted
        case .empty:
            return .empty
        case .wait(let earliest):
            // The first customer here is not due yet (the fleet order delay), or another instance's customers
            // arrived first: they are served before these ask again.
            if delay > 0, earliest == arrivals.first?.arrivalMicroseconds { return .notDueBefore(microseconds: earliest + Int64(delay)) }
            return .retry
        case .closed(let reason):
            closeLocally(sale: sale, reason: reason)
            return .closed(reason)
        case .notStarted(let milliseconds):
            return .notStarted(millisecondsUntilStart: milliseconds)
        case .notFound:
            return .notFound
        }
    }

    /// Enough units are here but spread over buckets each too small for the order: give those leases back
    /// (after the commits queued before) so the next lease can hold the whole order.
    func consolidate(sale: LocalSale) async {
        let saleID = sale.definition.id
        let returning = sale.state.withLock { state -> [(shardID: String, fence: Int64, bucket: TokenBucket)] in
            var result: [(String, Int64, TokenBucket)] = []
            for shardID in state.slots.keys.sorted() {
                guard var slot = state.slots[shardID], let bucket = slot.bucket, bucket.available > 0,
                      case .closeBucketAndReturn(let shard, let fence) = slot.machine.returnRequested() else { continue }
                state.slots[shardID] = slot
                result.append((shard, fence, bucket))
            }
            return result
        }
        guard !returning.isEmpty else { return }
        for item in returning {
            sale.unpublish(item.bucket)
            _ = item.bucket.close()
        }
        await returnLeases(saleID: saleID, returning.map { ($0.shardID, $0.fence) }, reason: "fragmented")
    }

    /// The same, now, outside the reconcile tick: the live hub calls it before it tells sockets that a sale
    /// closed, so that a waiter served by the last units hears of the order before the close.
    public func announceServedWaiters(saleID: String) async {
        guard let sale = trackedSale(saleID) else { return }
        await announceServedWaiters(sale: sale)
    }

    /// Reads the waiters served since the last tick and hands them to the observer (the live hub). The
    /// cursor starts at the ledger time at which this instance first loaded the sale, so a restarted instance does not
    /// replay old news and a waiter served before the first tick is still told.
    func announceServedWaiters(sale: LocalSale) async {
        guard let observer = servedObserver.withLock({ $0 }) else { return }
        let saleID = sale.definition.id
        let after = sale.state.withLock { $0.lastServedID }
        // Served customers are told only once the replicas hold their orders (when configured): a failover
        // must not take back an order somebody was told about. Short of that, the cursor stays put and the
        // next tick tries again.
        guard let result = try? await control.perform(saleID: saleID, { ledger throws(RedisError) in
            let result = try ledger.servedWaiters(saleID: saleID, after: after)
            if !result.served.isEmpty { try ledger.requireReplicasOfEveryWrite(saleID: saleID) }
            return result
        }) else { return }
        sale.state.withLock { $0.lastServedID = result.lastID }
        if !result.served.isEmpty { observer(saleID, result.served) }
    }

    /// Gives leases back to the pool (waitlist first), after every commit queued before. On failure the
    /// leases expire by themselves and return to the pool then. Answers whether the ledger took them.
    @discardableResult
    func returnLeases(saleID: String, _ leases: [(shardID: String, fence: Int64)], reason: String) async -> Bool {
        precondition(leases.count <= 10_000, "return at most 10000 leases at once")
        let owner = configuration.instanceID
        do {
            try await committer.perform(saleID: saleID) { ledger throws(RedisError) in
                for lease in leases {
                    _ = try ledger.returnLease(saleID: saleID, owner: owner, shardID: lease.shardID, fence: lease.fence)
                }
            }
            return true
        } catch {
            logger.warning("returning leases failed; they expire by themselves", metadata: ["sale": "\(saleID)", "reason": "\(reason)", "error": "\(error)"])
            return false
        }
    }

    /// A commit on this lease ended with an unknown outcome: its units are neither sold nor free until the
    /// ledger says so. Stop selling from the lease and stop renewing it; the reconciler returns it through
    /// the committer, so the return is ordered after the uncertain commit (a late copy of that commit is
    /// applied first, or fenced). If the ledger stays away, the lease expires there by itself.
    func abandonLease(sale: LocalSale, shardID: String) {
        let bucket = sale.state.withLock { state -> TokenBucket? in
            guard var slot = state.slots[shardID] else { return nil }
            if case .closeBucketAndReturn(let shard, let fence) = slot.machine.returnRequested() {
                precondition(state.abandoned.count < 100_000, "abandoned leases are returned every reconcile tick")
                state.abandoned.append(LocalSale.AbandonedLease(shardID: shard, fence: fence, attemptsLeft: Self.abandonedReturnAttempts))
            }
            state.slots[shardID] = slot
            return slot.bucket
        }
        if let bucket {
            sale.unpublish(bucket)
            _ = bucket.close()
        }
        logger.warning("a commit's outcome is unknown; its lease is given back", metadata: ["sale": "\(sale.definition.id)", "shard": "\(shardID)"])
    }

    /// Returns of abandoned leases tried per lease (one per reconcile tick) before leaving it to expire.
    static let abandonedReturnAttempts = 20

    /// Returns the leases given up after unknown outcomes; keeps those the ledger could not take yet.
    func returnAbandonedLeases(sale: LocalSale) async {
        let abandoned = sale.state.withLock { state in
            defer { state.abandoned.removeAll() }
            return state.abandoned
        }
        guard !abandoned.isEmpty else { return }
        let saleID = sale.definition.id
        if await returnLeases(saleID: saleID, abandoned.map { ($0.shardID, $0.fence) }, reason: "unknown commit outcome") {
            logger.info("abandoned leases returned", metadata: ["sale": "\(saleID)", "leases": "\(abandoned.count)"])
            return
        }
        let retry = abandoned.compactMap { lease -> LocalSale.AbandonedLease? in
            guard lease.attemptsLeft > 1 else { return nil }
            var next = lease
            next.attemptsLeft -= 1
            return next
        }
        sale.state.withLock { $0.abandoned.append(contentsOf: retry) }
    }

    /// The ledger refused a commit on this lease: stop selling from it.
    func leaseLost(sale: LocalSale, shardID: String) {
        let bucket = sale.state.withLock { state -> TokenBucket? in
            guard var slot = state.slots[shardID] else { return nil }
            _ = slot.machine.lost()
            state.slots[shardID] = slot
            return slot.bucket
        }
        if let bucket {
            sale.unpublish(bucket)
            _ = bucket.close()
        }
    }

    /// The ledger says the sale is closed: close every bucket and forget the leases (the close revoked them).
    func closeLocally(sale: LocalSale, reason: ClosedReason) {
        _ = sale.closeAllBuckets()
        sale.state.withLock { state in
            state.slots.removeAll()
            if var view = state.view {
                view.status = .closed
                view.closedReason = reason
                if reason == .soldOut {
                    // Sold out means every unit is sold: no need to wait for the next view.
                    view.sold = view.stock
                    view.pool = 0
                    view.leased = 0
                }
                view.waitlist = 0
                state.view = view
            }
        }
    }

    // MARK: Reconcile

    /// One reconcile tick: picks up sales created elsewhere, then reconciles every tracked sale. Sales whose
    /// lifecycle settled (closed, summary stored) leave the registry of active sales.
    ///
    /// The sales of each control lane (one per master of the ledger) are reconciled one after the other, the
    /// lanes side by side, and the registry read beside them. A tick waits for them at most
    /// ``laneWaitMilliseconds``; a lane still busy then (its master stalls: each command waits up to the
    /// connection's timeout, longer than a lease's slack) goes on by itself and is skipped by the ticks until
    /// it is done. So a stalled master delays the renewals of its own sales only, never those of sales on the
    /// other masters. A sale first seen in this tick is reconciled in it too, after.
    public func reconcileAll() async {
        let tracked = trackedSales
        var work: [(lane: Int, run: @Sendable () async -> Void)] = [(CommitLanes.registriesLane, { [self] in
            if let active = try? await control.performOnRegistries({ ledger throws(RedisError) in try ledger.activeSaleIDs() }) {
                for saleID in active.prefix(1_000) { _ = try? await localSale(saleID) }
            }
        })]
        for (lane, sales) in control.byLane(tracked, saleID: \.definition.id) {
            work.append((lane, { [self] in for sale in sales { await reconcileTick(sale: sale) } }))
        }
        let finished = await runLanes(work)
        guard finished.contains(CommitLanes.registriesLane) else { return }
        let known = Set(tracked.map { ObjectIdentifier($0) })
        let found = trackedSales.filter { !known.contains(ObjectIdentifier($0)) }
        guard !found.isEmpty else { return }
        _ = await runLanes(control.byLane(found, saleID: \.definition.id).map { lane, sales in
            (lane, { [self] in for sale in sales { await reconcileTick(sale: sale) } })
        })
    }

    /// How long a reconcile tick waits for a control lane before it leaves the lane to finish by itself.
    static let laneWaitMilliseconds = 500

    /// Starts each lane's work unless that lane's earlier work still runs, and waits until all of it finished or
    /// ``laneWaitMilliseconds`` passed. Answers the lanes whose work finished within the wait.
    private func runLanes(_ work: [(lane: Int, run: @Sendable () async -> Void)]) async -> Set<Int> {
        precondition(work.count <= CommitLanes.maxLanes + 1, "at most one piece of work per lane and the registries")
        let (done, finish) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .unbounded)
        var started = 0
        for (lane, run) in work {
            guard busyLanes.withLock({ $0.insert(lane).inserted }) else { continue }
            started += 1
            Task { [self] in
                await run()
                busyLanes.withLock { _ = $0.remove(lane) }
                finish.yield(lane)
            }
        }
        guard started > 0 else { return [] }
        let expected = started
        return await withTaskGroup(of: Set<Int>.self) { group in
            group.addTask {
                var finished: Set<Int> = []
                for await lane in done {
                    finished.insert(lane)
                    if finished.count == expected { break }
                }
                return finished
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Self.laneWaitMilliseconds))
                return []
            }
            // The first to end: every lane finished, or the wait ran out (then the collector, cancelled, answers
            // the lanes that finished by then).
            var finished = await group.next() ?? []
            group.cancelAll()
            for await more in group { finished.formUnion(more) }
            return finished
        }
    }

    /// A tracked sale's part of a reconcile tick: forgets it a while after it settled, else reconciles it and
    /// stores its statistics.
    private func reconcileTick(sale: LocalSale) async {
        let saleID = sale.definition.id
        // A settled sale costs no ledger call any more; refusals after its close are not in its summary.
        // A while after it settled the process forgets it (a later request loads it again).
        let now = monotonicMilliseconds
        let forget = sale.state.withLock { state -> Bool? in
            guard state.settled else { return nil }
            if state.settledAtMilliseconds == nil { state.settledAtMilliseconds = now }
            return now - state.settledAtMilliseconds! >= Self.settledSaleMemoryMilliseconds
        }
        if let forget {
            _ = takeRejections(saleID: saleID)
            if forget { forgetSale(saleID) }
            return
        }
        await reconcile(sale: sale)
        let counts = takeRejections(saleID: saleID)
        let closed = sale.view?.status == .closed
        guard !counts.isEmpty || closed else { return }
        do {
            let stored = try await control.perform(saleID: saleID) { ledger throws(RedisError) -> Bool in
                try ledger.addRejections(saleID: saleID, counts)
                return closed ? try ledger.summary(saleID: saleID)?.final == true : false
            }
            if stored { sale.state.withLock { $0.settled = true } }
        } catch {
            logger.warning("storing sale statistics failed", metadata: ["sale": "\(saleID)", "error": "\(error)"])
        }
    }

    /// How long a settled sale stays in this process's maps (it answers SOLD_OUT/SALE_ENDED from memory meanwhile).
    static let settledSaleMemoryMilliseconds: Int64 = 60_000

    /// The sale's summary (final once it closed).
    public func summary(saleID: String) async throws(ReservationError) -> SaleSummary {
        let counts = takeRejections(saleID: saleID)
        let summary: SaleSummary?
        do {
            summary = try await control.perform(saleID: saleID) { ledger throws(RedisError) in
                try ledger.addRejections(saleID: saleID, counts)
                return try ledger.summary(saleID: saleID)
            }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
        guard let summary else { throw ReservationError(.notFound, "no sale \(saleID)") }
        return summary
    }

    /// Renews leases near their deadline, learns the global view, returns surplus when customers wait,
    /// retires drained leases and prefetches a lease when the local units run low.
    func reconcile(sale: LocalSale) async {
        let saleID = sale.definition.id
        await returnAbandonedLeases(sale: sale)
        let now = monotonicMilliseconds
        var renewals: [(shardID: String, fence: Int64)] = []
        var expired: [TokenBucket] = []
        sale.state.withLock { state in
            for shardID in state.slots.keys.sorted() {
                guard var slot = state.slots[shardID] else { continue }
                switch slot.machine.tick(nowMilliseconds: now) {
                case .sendRenew(let shard, let fence): renewals.append((shard, fence))
                case .closeBucket: if let bucket = slot.bucket { expired.append(bucket) }
                case .none, .openBucket, .closeBucketAndReturn: break
                }
                state.slots[shardID] = slot
            }
        }
        for bucket in expired {
            lapsedLeases.add(1, ordering: .relaxed)
            sale.unpublish(bucket)
            _ = bucket.close()
            logger.warning("lease passed its local deadline unrenewed", metadata: ["sale": "\(saleID)", "shard": "\(bucket.shardID)"])
        }

        let owner = configuration.instanceID
        let ttl = configuration.leaseTTLMilliseconds
        let sentAt = monotonicMilliseconds
        let renewed: (LedgerView, [Int?])?
        do {
            let leases = renewals
            renewed = try await control.perform(saleID: saleID) { ledger throws(RedisError) in
                try ledger.renewLeases(saleID: saleID, owner: owner, leases: leases, ttlMilliseconds: ttl)
            }
        } catch {
            // Once per outage, not once per tick.
            if ledgerReachable.exchange(false, ordering: .relaxed) {
                logger.warning("the ledger is unreachable; leases expire unless it returns", metadata: ["sale": "\(saleID)", "error": "\(error)"])
            }
            return
        }
        if !ledgerReachable.exchange(true, ordering: .relaxed) {
            logger.info("the ledger is reachable again", metadata: ["sale": "\(saleID)"])
        }
        guard let (view, remaining) = renewed else { return }
        sale.update(view: view, fetchedAtMilliseconds: sentAt)
        await announceServedWaiters(sale: sale)
        if view.status == .closed {
            closeLocally(sale: sale, reason: view.closedReason ?? .ended)
            return
        }

        // Apply renewals; decide returns (surplus while customers wait, drained leases).
        let deadline = sentAt + Int64(ttl - configuration.leaseSafetyMarginMilliseconds)
        var returns: [(shardID: String, fence: Int64, bucket: TokenBucket?)] = []
        var lost: [TokenBucket] = []
        var soldSinceLastTick = 0
        sale.state.withLock { state in
            for (lease, units) in zip(renewals, remaining) {
                guard var slot = state.slots[lease.shardID] else { continue }
                if let units {
                    slot.ledgerRemaining = units
                    if case .closeBucketAndReturn(let shard, let fence) = slot.machine.renewed(deadlineMilliseconds: deadline) {
                        returns.append((shard, fence, slot.bucket))
                    }
                } else {
                    _ = slot.machine.lost()
                    if let bucket = slot.bucket { lost.append(bucket) }
                }
                state.slots[lease.shardID] = slot
            }
            for shardID in state.slots.keys.sorted() {
                guard var slot = state.slots[shardID], slot.machine.isSelling, let bucket = slot.bucket else { continue }
                let available = bucket.available
                let taken = bucket.capacity - available
                let idle = taken == slot.takenAtLastTick
                soldSinceLastTick += max(0, taken - slot.takenAtLastTick)
                slot.takenAtLastTick = taken
                let drained = available == 0 && slot.ledgerRemaining == 0
                let surplus = view.waitlist > 0 && idle && available > 0
                if drained || surplus, case .closeBucketAndReturn(let shard, let fence) = slot.machine.returnRequested() {
                    returns.append((shard, fence, bucket))
                }
                state.slots[shardID] = slot
            }
            state.slots = state.slots.filter { _, slot in
                switch slot.machine.state {
                case .fenced, .returned: false
                default: true
                }
            }
        }
        for bucket in lost {
            sale.unpublish(bucket)
            _ = bucket.close()
        }
        for item in returns {
            if let bucket = item.bucket {
                sale.unpublish(bucket)
                _ = bucket.close()
            }
        }
        if !returns.isEmpty {
            await returnLeases(saleID: saleID, returns.map { ($0.shardID, $0.fence) }, reason: "surplus or drained")
        }

        // Prefetch before the buckets run dry, but only as much as this instance sold in the last interval
        // (twice that): an instance whose customers stopped, or never came, does not hoard units that
        // other instances' customers are waiting for.
        let lastGrant = sale.state.withLock { $0.lastGrantUnits }
        let threshold = max(1, Int(Double(lastGrant) * configuration.prefetchFraction))
        if lastGrant > 0, soldSinceLastTick > 0 || !configuration.leaseToDemand, view.status == .open, view.pool > 0, view.waitlist == 0, sale.availableLocally < threshold {
            _ = await refill(sale: sale, demandUnits: configuration.leaseToDemand ? 2 * soldSinceLastTick : nil)
        }
    }

    // MARK: Admin

    /// Revokes leases in the ledger: every lease (`even`: they re-spread by adaptive sizing) or those of
    /// one instance (`drain`). The owners learn it at their next renewal or commit.
    /// An operator's close: the ledger closes the sale now (`closedReason` `closed`), every lease is revoked
    /// and the waitlist is left unserved; this instance closes its buckets at once, the others at their next
    /// renewal (their leases are gone), and the reconciler stores the final summary as for any close.
    /// False when the sale was already closed.
    public func closeSale(saleID: String) async throws(ReservationError) -> Bool {
        let result: (status: SaleStatus, reason: ClosedReason?, closedNow: Bool)?
        do {
            result = try await control.perform(saleID: saleID) { ledger throws(RedisError) in
                try ledger.closeSaleReportingChange(saleID: saleID, mode: ClosedReason.closed.rawValue)
            }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
        guard let result else { throw ReservationError(.notFound, "no sale \(saleID)") }
        assert(result.status == .closed, "a forced close leaves the sale closed")
        if let sale = trackedSale(saleID) {
            closeLocally(sale: sale, reason: result.reason ?? .closed)
            if let snapshot = try? await snapshot(saleID: saleID) {
                sale.update(view: Self.view(of: snapshot), fetchedAtMilliseconds: monotonicMilliseconds)
            }
        }
        return result.closedNow
    }

    /// Sales in the registry, latest start first, with their ledger snapshots (see `Ledger.salePage`).
    public func salePage(after cursor: (id: String, startsAtMilliseconds: Int64)?, count: Int) async throws(ReservationError) -> [(id: String, startsAtMilliseconds: Int64, snapshot: LedgerSnapshot?)] {
        do {
            return try await control.performOnRegistries { ledger throws(RedisError) in
                try ledger.salePage(after: cursor, count: count).map { entry throws(RedisError) in
                    (entry.id, entry.startsAtMilliseconds, try ledger.snapshot(saleID: entry.id))
                }
            }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
    }

    /// Confirmed orders of the sale still waiting in the Redis outbox for MongoDB.
    public func outboxBacklog(saleID: String) async throws(ReservationError) -> Int {
        do {
            return try await control.perform(saleID: saleID) { ledger throws(RedisError) in try ledger.outboxBacklog(saleID: saleID) }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
    }

    public func rebalance(saleID: String, drainInstance: String?) async throws(ReservationError) -> (revokedLeases: Int, returnedUnits: Int) {
        let result: (leases: Int, units: Int)?
        do {
            result = try await control.perform(saleID: saleID) { ledger throws(RedisError) in
                try ledger.revokeLeases(saleID: saleID, owner: drainInstance)
            }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
        guard let result else { throw ReservationError(.notFound, "no sale \(saleID)") }
        return (result.leases, result.units)
    }

    /// Graceful stop: close every bucket, let the admission pumps answer their parked customers, return
    /// every lease after the queued commits, stop the committer.
    public func shutdown() async {
        for sale in trackedSales {
            let saleID = sale.definition.id
            let closed = sale.closeAllBuckets()
            if let pump = sale.state.withLock({ $0.admissionPump }) { await pump.value }
            let leases = sale.state.withLock { state -> [(String, Int64)] in
                defer {
                    state.slots.removeAll()
                    state.abandoned.removeAll()
                }
                return state.slots.values.compactMap { slot in
                    switch slot.machine.state {
                    case .active(let grant), .renewing(let grant), .expiring(let grant): (grant.shardID, grant.fence)
                    default: nil
                    }
                } + state.abandoned.map { ($0.shardID, $0.fence) }
            }
            guard !leases.isEmpty else { continue }
            if await returnLeases(saleID: saleID, leases, reason: "shutdown") {
                logger.info("leases returned", metadata: ["sale": "\(saleID)", "leases": "\(leases.count)", "unsold": "\(closed.reduce(0) { $0 + $1.units })"])
            }
        }
        committer.shutdown()
        control.shutdown()
    }
}
