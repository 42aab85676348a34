import Logging
import ReservationEngine
import Synchronization

/// The reservation engine of one instance: the Swift API the HTTP layer calls.
///
/// Hot path of `reserve`: check the window and the customer's in-flight units, take units from a local
/// bucket with one compare-and-swap, queue the order for the group committer and answer only once the
/// ledger confirmed it. Lease acquisition, waitlist joins and returns go through the committer's queue
/// too, so everything this instance says to the ledger is ordered.
public final class ReservationService: Sendable {
    public let configuration: EngineConfiguration
    /// Commits, and the ledger calls that must be ordered with them (lease acquire and return, waitlist): one
    /// group committer per master of the ledger, a sale always on the same one (see ``CommitLanes``).
    let committer: CommitLanes
    /// Everything else (renewals, reads, summaries) on connections of their own, so that a deep commit
    /// queue never delays a lease renewal past its deadline; one lane per master, so that a master that
    /// stalls never delays the renewals of sales on the others.
    let control: CommitLanes
    let logger: Logger
    private let sales = Mutex<[String: LocalSale]>([:])
    /// Per customer of a sale: units taken and not yet answered, and idempotency keys in flight with the
    /// requests waiting for their outcome.
    let inFlight = InFlightOrders<CheckedContinuation<ReservationOutcome?, Never>>()
    private let clockOrigin = ContinuousClock.now
    /// Rejections by sale and code since the last reconcile (flushed into the sale's statistics).
    private let rejections = Mutex<[String: [String: Int]]>([:])
    /// Told, per sale, about waiting customers that were served (the live hub pushes it to them).
    let servedObserver = Mutex<(@Sendable (String, [ServedWaiter]) -> Void)?>(nil)
    /// Whether the last reconcile reached the ledger (for logging transitions only).
    let ledgerReachable = Atomic(true)
    /// Buckets closed at their lease's local deadline because no renewal came back in time.
    let lapsedLeases = Atomic(0)
    /// Control lanes (and ``CommitLanes/registriesLane``) whose reconcile work still runs.
    let busyLanes = Mutex<Set<Int>>([])

    public init(redis: RedisConfiguration, configuration: EngineConfiguration, logger: Logger, commitObserver: (any CommitObserver)? = nil) {
        self.configuration = configuration
        self.logger = logger
        let layout = LaneLayout.forLedger(redis, logger: logger)
        self.committer = CommitLanes(
            redis: redis,
            layout: layout,
            owner: configuration.instanceID,
            configuration: .init(queueCapacity: configuration.commitQueueCapacity, maxBatchOrders: configuration.commitBatchMaxOrders,
                                 commitDelayMicroseconds: configuration.commitDelayMicroseconds),
            logger: logger,
            observer: commitObserver,
            threadName: "group-committer"
        )
        self.control = CommitLanes(
            redis: redis,
            layout: layout,
            owner: configuration.instanceID,
            configuration: .init(queueCapacity: 4_096, maxBatchOrders: 64),
            logger: logger,
            threadName: "ledger-control"
        )
    }

    /// Registers the receiver of served-waiter announcements (one per service).
    public func onWaitersServed(_ observer: @escaping @Sendable (_ saleID: String, _ served: [ServedWaiter]) -> Void) {
        servedObserver.withLock { $0 = observer }
    }

    /// Leases this instance sells from, across sales.
    public var leasesHeld: Int {
        trackedSales.reduce(0) { total, sale in
            total + sale.state.withLock { $0.slots.values.filter(\.machine.isSelling).count }
        }
    }

    public var commitStatistics: GroupCommitter.Statistics { committer.statistics }

    /// Leases whose bucket this instance closed at the local deadline, unrenewed (the ledger, or the master of
    /// the sale, did not answer in time), since it started.
    public var leasesLapsed: Int { lapsedLeases.load(ordering: .relaxed) }

    /// Requests waiting for the group committer.
    public var commitQueueDepth: Int { committer.queuedCount }

    /// Monotonic milliseconds since this service started.
    var monotonicMilliseconds: Int64 {
        let elapsed = clockOrigin.duration(to: .now)
        return elapsed.components.seconds * 1_000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: Sales

    /// Creates a sale in the ledger.
    public func createSale(_ definition: SaleDefinition) async throws(ReservationError) {
        try definition.validate()
        let created: Bool
        do {
            created = try await control.perform(saleID: definition.id) { ledger throws(RedisError) in try ledger.createSale(definition) }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable: \(error.code)")
        }
        guard created else { throw ReservationError(.saleExists, "a sale with id \(definition.id) exists") }
    }

    /// An atomic read of the sale in the ledger (lease table, counters); nil when unknown.
    public func snapshot(saleID: String) async throws(RedisError) -> LedgerSnapshot? {
        try await control.perform(saleID: saleID) { ledger throws(RedisError) in try ledger.snapshot(saleID: saleID) }
    }

    /// The last global view this instance learned (at most one reconcile interval old).
    /// The global view of the sale, at most ``viewFreshnessMilliseconds`` plus one ledger round trip old:
    /// a caller that finds it older refreshes it (one refresh at a time per sale; the others answer the view
    /// they have meanwhile), so `/stock`, `/sales/{id}` and the live push stay within API.md's 100 ms.
    public func stock(saleID: String) async throws(RedisError) -> LedgerView? {
        if let sale = sales.withLock({ $0[saleID] }), sale.view != nil {
            let sentAt = monotonicMilliseconds
            if sale.view?.status != .closed, sale.claimViewRefresh(nowMilliseconds: sentAt, maximumAgeMilliseconds: Self.viewFreshnessMilliseconds) {
                defer { sale.finishViewRefresh() }
                if let snapshot = try? await snapshot(saleID: saleID) {
                    sale.update(view: Self.view(of: snapshot), fetchedAtMilliseconds: sentAt)
                }
            }
            return sale.view
        }
        guard let snapshot = try await snapshot(saleID: saleID) else { return nil }
        return Self.view(of: snapshot)
    }

    /// How old the view may get before a reader refreshes it.
    static let viewFreshnessMilliseconds: Int64 = 50

    public static func view(of snapshot: LedgerSnapshot) -> LedgerView {
        LedgerView(
            status: snapshot.status, closedReason: snapshot.closedReason, stock: snapshot.definition.stock,
            sold: snapshot.sold, pool: snapshot.pool, leased: snapshot.leased, waitlist: snapshot.waitlist,
            ledgerNowMilliseconds: snapshot.ledgerNowMilliseconds
        )
    }

    /// The sale as this instance tracks it, loaded from the ledger the first time.
    func localSale(_ saleID: String) async throws(ReservationError) -> LocalSale {
        if let sale = sales.withLock({ $0[saleID] }) { return sale }
        guard SaleDefinition.isValidID(saleID) else { throw ReservationError(.notFound, "no sale \(saleID)") }
        let snapshot: LedgerSnapshot?
        let sentAt = monotonicMilliseconds
        do {
            snapshot = try await self.snapshot(saleID: saleID)
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable: \(error.code)")
        }
        guard let snapshot else { throw ReservationError(.notFound, "no sale \(saleID)") }
        let fresh = LocalSale(definition: snapshot.definition, admissionQueueCapacity: configuration.admissionQueueCapacity,
                              recordAdmissionOrder: configuration.recordAdmissionOrder)
        fresh.update(view: Self.view(of: snapshot), fetchedAtMilliseconds: sentAt)
        // Waiters served from now on (ledger time) are announced by this instance; earlier ones are old news
        // (a restarted instance does not replay them), whenever its first reconcile tick comes.
        fresh.state.withLock { $0.lastServedID = "\(snapshot.ledgerNowMilliseconds)-0" }
        return sales.withLock { sales in
            if let existing = sales[saleID] { return existing }
            sales[saleID] = fresh
            return fresh
        }
    }

    var trackedSales: [LocalSale] { sales.withLock { Array($0.values) } }

    /// The sale when this instance tracks it (nothing is loaded).
    func trackedSale(_ saleID: String) -> LocalSale? { sales.withLock { $0[saleID] } }

    /// Drops a settled sale from this process's maps (its leases are gone: the close revoked them).
    func forgetSale(_ saleID: String) {
        let removed = sales.withLock { $0.removeValue(forKey: saleID) }
        _ = takeRejections(saleID: saleID)
        if let removed { precondition(removed.availableLocally == 0, "a settled sale has no open bucket") }
    }

    /// Units this instance can sell now, per lease (shard id) of the sale; empty for an unknown sale.
    public func sellableUnits(saleID: String) -> [String: Int] {
        sales.withLock { $0[saleID] }?.sellableUnits ?? [:]
    }

    /// With `recordAdmissionOrder`: the arrival numbers of the sale's grants, in grant order.
    public func admissionGrantLog(saleID: String) -> [UInt64] {
        sales.withLock { $0[saleID] }?.admission.withLock { $0.grantLog } ?? []
    }

    /// Reservations parked in the sale's admission queue now.
    public func admissionQueueDepth(saleID: String) -> Int {
        sales.withLock { $0[saleID] }?.admission.withLock { $0.count } ?? 0
    }

    /// Sales this process tracks (for tests and metrics).
    public var trackedSaleCount: Int { sales.withLock { $0.count } }

    // MARK: Reservations

    /// Reserves `quantity` units of a sale for a customer. Never throws: every refusal is a typed outcome.
    /// `arrivalMicroseconds`: when the customer arrived (wall clock, microseconds since 1970) if the front
    /// stamped it; nil: now. It orders the customers who wait for a unit, on this instance (a customer the
    /// front read earlier but handed over later parks ahead: see `AdmissionQueue.park`) and across instances.
    /// Who finds a unit at once with nobody waiting takes it.
    public func reserve(saleID: String, customerID: String, quantity: Int, idempotencyKey: String?, delivery: String,
                        arrivalMicroseconds: Int64? = nil) async -> ReservationOutcome {
        let outcome = await reserveOnce(saleID: saleID, customerID: customerID, quantity: quantity, idempotencyKey: idempotencyKey,
                                        delivery: delivery, arrival: arrivalMicroseconds)
        if case .rejected(let error, _) = outcome, error.code != .notFound, error.code != .invalidRequest {
            recordRejection(saleID: saleID, code: error.code)
        }
        return outcome
    }

    /// Sales with rejection counts waiting for the next reconcile, at most (each is a sale this instance tracks;
    /// the reconcile takes every tracked sale's counts).
    public static let maximumSalesWithRejections = 4_096

    /// Counts a refusal decided before the engine (rate limits, bad input) in the sale's statistics. Only for a sale
    /// this instance tracks (one it has served or looked up): a made-up sale id leaves nothing behind.
    public func recordRejection(saleID: String, code: ReservationError.Code) {
        guard sales.withLock({ $0[saleID] != nil }) else { return }
        rejections.withLock { rejections in
            guard rejections[saleID] != nil || rejections.count < Self.maximumSalesWithRejections else { return }
            rejections[saleID, default: [:]][code.rawValue, default: 0] += 1
            assert(rejections.count <= Self.maximumSalesWithRejections, "the rejection counts are bounded")
        }
    }

    /// Sales with rejection counts not yet flushed (tests and the bound's check).
    public var salesWithRejections: Int { rejections.withLock { $0.count } }

    /// Takes the rejection counts gathered since the last call.
    func takeRejections(saleID: String) -> [String: Int] {
        rejections.withLock { $0.removeValue(forKey: saleID) } ?? [:]
    }

    /// An order: decides what it can without the ledger, then leads its customer's in-flight entry (units,
    /// and its idempotency key) or follows the request that leads its key. The synchronous work around the
    /// awaits is in functions not inlined here (see `commit`); the leader's admission and commit (`lead`) are
    /// inlined, which keeps the order's chain of async frames one frame shorter.
    @inline(never)
    private func reserveOnce(saleID: String, customerID: String, quantity: Int, idempotencyKey: String?, delivery: String,
                             arrival: Int64?) async -> ReservationOutcome {
        let sale: LocalSale
        do {
            sale = try await localSale(saleID)
        } catch {
            return .rejected(error, retryAfterSeconds: error.code == .retryLater ? 1 : nil)
        }
        if let refused = Self.refusal(sale: sale, quantity: quantity, arrival: arrival) { return refused }
        let idempotencyKey = idempotencyKey ?? ""
        var key = idempotencyKey
        // Bounded: a follower whose leader finished before it could register starts again (the ledger knows
        // the key by then); after that many rounds it goes on without leading the key on this instance (the
        // ledger still gets the key with the order).
        for round in 0..<Self.followRounds {
            switch inFlight.start(saleID: saleID, customerID: customerID, key: key, quantity: quantity, limit: sale.definition.perCustomerLimit) {
            case .overLimit:
                return Self.limitExceeded(sale)
            case .lead:
                let outcome = await lead(sale: sale, customerID: customerID, quantity: quantity, idempotencyKey: idempotencyKey, delivery: delivery,
                                         arrival: arrival)
                finish(saleID: saleID, customerID: customerID, key: key, quantity: quantity, outcome: outcome)
                return outcome
            case .follow:
                if let shared = await follow(saleID: saleID, customerID: customerID, key: key) { return shared }
                if round == Self.followRounds - 2 { key = "" }
            }
        }
        preconditionFailure("the last round leads (no key to follow)")
    }

    /// Rounds of start and follow for one request; the last one starts without its key, so it leads.
    static let followRounds = 4

    @inline(never)
    private static func limitExceeded(_ sale: LocalSale) -> ReservationOutcome {
        .rejected(ReservationError(.limitExceeded, "at most \(sale.definition.perCustomerLimit) units per customer"), retryAfterSeconds: nil)
    }

    /// Waits for the outcome of the request leading `key`; nil when it finished before this one could register.
    @inline(never)
    private func follow(saleID: String, customerID: String, key: String) async -> ReservationOutcome? {
        await withCheckedContinuation { continuation in
            if !inFlight.follow(saleID: saleID, customerID: customerID, key: key, continuation) { continuation.resume(returning: nil) }
        }
    }

    /// The leader is done: its units and key are free on this instance, and its followers get its outcome.
    @inline(never)
    private func finish(saleID: String, customerID: String, key: String, quantity: Int, outcome: ReservationOutcome) {
        let followers = inFlight.finish(saleID: saleID, customerID: customerID, key: key, quantity: quantity)
        for follower in followers { follower.resume(returning: outcome) }
    }

    /// The units of a request that leads its customer's entry: a place in the admission queue, then the commit.
    @inline(__always)
    private func lead(sale: LocalSale, customerID: String, quantity: Int, idempotencyKey: String, delivery: String,
                      arrival: Int64?) async -> ReservationOutcome {
        let orderID = OrderID.make(saleID: sale.definition.id)
        let request = ParkedReservation.Request(customerID: customerID, quantity: quantity, orderID: orderID, idempotencyKey: idempotencyKey,
                                                delivery: delivery, arrivalMicroseconds: arrival)
        switch await admit(sale: sale, request) {
        case .decided(let outcome):
            return outcome
        case .granted(let bucket):
            return await commit(sale: sale, request, from: bucket)
        }
    }

    /// What refuses an order before it takes a unit: a quantity out of range, a request the front stamped before
    /// the sale opened (its head was read before the opening, whenever its body came: it never queues ahead of
    /// those who asked after the opening), or a sale this instance already knows is over. Nil: go on. (Not
    /// inlined: see `commit`.)
    @inline(never)
    private static func refusal(sale: LocalSale, quantity: Int, arrival: Int64?) -> ReservationOutcome? {
        let limit = sale.definition.perCustomerLimit
        guard quantity >= 1, quantity <= limit else {
            return .rejected(ReservationError(.invalidRequest, "quantity must be between 1 and \(limit)"), retryAfterSeconds: nil)
        }
        if let arrival, arrival < sale.definition.startsAtMilliseconds * 1_000 {
            let early = sale.definition.startsAtMilliseconds * 1_000 - arrival
            return .rejected(ReservationError(.saleNotStarted, "the request was sent before the sale opened"),
                             retryAfterSeconds: max(1, Int((early + 999_999) / 1_000_000)))
        }
        guard let view = sale.view else { return nil }
        let window = SaleWindow(definition: sale.definition)
        switch window.admission(nowMilliseconds: view.ledgerNowMilliseconds + wallClockDrift(view), status: view.status, closedReason: view.closedReason) {
        case .open, .notStarted:
            return nil  // the ledger decides the opening instant with its own clock
        case .ended:
            return .rejected(closedError(view.status == .closed ? view.closedReason ?? .ended : .ended), retryAfterSeconds: nil)
        case .soldOut:
            return .rejected(closedError(.soldOut), retryAfterSeconds: nil)
        }
    }

    /// Commits units taken from `bucket`; answers only once the ledger decided.
    ///
    /// The request's task is suspended here until the batch's answer, and a connection task keeps the
    /// frames of its deepest request (see APIRoutes.PlacedOrder): what happens after the answer is in
    /// `settle`, not inlined, so this frame holds the commit and little else.
    private func commit(sale: LocalSale, _ request: ParkedReservation.Request, from bucket: TokenBucket) async -> ReservationOutcome {
        let commit = PendingCommit(orderID: request.orderID, shardID: bucket.shardID, fence: bucket.fence, customerID: request.customerID,
                                   quantity: request.quantity, idempotencyKey: request.idempotencyKey, delivery: request.delivery)
        let outcome = await committer.commit(saleID: sale.definition.id, commit)
        return settle(outcome, sale: sale, request, from: bucket)
    }

    @inline(never)
    private func settle(_ outcome: CommitOutcome, sale: LocalSale, _ request: ParkedReservation.Request, from bucket: TokenBucket) -> ReservationOutcome {
        let saleID = sale.definition.id
        let limit = sale.definition.perCustomerLimit
        let quantity = request.quantity
        switch outcome {
        case .committed(let createdAt):
            return .confirmed(OrderRecord(
                orderID: request.orderID, customerID: request.customerID, quantity: quantity, createdAtMilliseconds: createdAt,
                status: .confirmed, idempotencyKey: request.idempotencyKey, delivery: request.delivery, shardID: bucket.shardID,
                fence: bucket.fence, instanceID: configuration.instanceID, source: "bucket"
            ))
        case .duplicate(let record):
            // Our own order replayed after an unknown outcome used the units; an earlier order did not.
            if record.orderID != request.orderID { bucket.putBack(quantity) }
            return .confirmed(record)
        case .waitlisted(let position):
            // The key names this customer's waitlist entry (joined elsewhere): one key, one outcome.
            bucket.putBack(quantity)
            return .waitlisted(position: position)
        case .limitExceeded:
            bucket.putBack(quantity)
            return .rejected(ReservationError(.limitExceeded, "at most \(limit) units per customer"), retryAfterSeconds: nil)
        case .fenced:
            leaseLost(sale: sale, shardID: bucket.shardID)
            return .rejected(ReservationError(.retryLater, "the lease was fenced off; nothing was reserved"), retryAfterSeconds: 1)
        case .closed(let reason):
            closeLocally(sale: sale, reason: reason)
            return .rejected(Self.closedError(reason), retryAfterSeconds: nil)
        case .notFound:
            return .rejected(ReservationError(.notFound, "no sale \(saleID)"), retryAfterSeconds: nil)
        case .unavailable(let error) where error.code == .queueFull:
            // Never queued, so never sent: the units are certainly free.
            bucket.putBack(quantity)
            return .rejected(ReservationError(.retryLater, "the ledger is overloaded (\(error.code))"), retryAfterSeconds: 1)
        case .unavailable(let error):
            // Outcome unknown: the units are neither sold nor free until the ledger says so. The lease
            // stops selling and goes back through the committer, after this commit.
            abandonLease(sale: sale, shardID: bucket.shardID)
            return .rejected(ReservationError(.retryLater, "the ledger did not answer (\(error.code))"), retryAfterSeconds: 1)
        }
    }

    /// Cancels an order (`customerID` nil: an admin). Units go back to the sale, waitlist first.
    public func cancel(saleID: String, orderID: String, customerID: String?) async throws(ReservationError) -> OrderRecord {
        let outcome: CancelOutcome
        do {
            outcome = try await committer.perform(saleID: saleID) { ledger throws(RedisError) in
                let outcome = try ledger.cancel(saleID: saleID, orderID: orderID, customerID: customerID)
                // Announced only once the replicas have it (when configured); the same call again answers it.
                if case .cancelled = outcome { try ledger.requireReplicas() }
                return outcome
            }
        } catch where error.code == .notReplicated {
            throw ReservationError(.retryLater, "the cancellation is not replicated yet; repeat the request")
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
        switch outcome {
        case .cancelled(let record): return record
        case .notFound: throw ReservationError(.notFound, "no order \(orderID)")
        case .closed: throw ReservationError(.saleEnded, "the sale is closed; orders can no longer be cancelled")
        }
    }

    /// One order by id (its sale is part of the id); nil when unknown or malformed.
    public func order(orderID: String) async throws(ReservationError) -> OrderRecord? {
        guard let saleID = OrderID.saleID(of: orderID) else { return nil }
        do {
            return try await control.perform(saleID: saleID) { ledger throws(RedisError) in try ledger.order(saleID: saleID, orderID: orderID) }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
    }

    /// A customer's orders in a sale and waitlist position; NOT_FOUND for an unknown sale, and for a sale this
    /// instance still remembers whose keys have left Redis (never an empty list that only means "not here").
    public func customerView(saleID: String, customerID: String) async throws(ReservationError) -> (orders: [OrderRecord], waitlistPosition: Int?) {
        _ = try await localSale(saleID)
        let view: (orders: [OrderRecord], waitlistPosition: Int?, saleExists: Bool)
        do {
            view = try await control.perform(saleID: saleID) { ledger throws(RedisError) in try ledger.customerView(saleID: saleID, customerID: customerID) }
        } catch {
            throw ReservationError(.retryLater, "the ledger is unreachable (\(error.code))")
        }
        guard view.saleExists else { throw ReservationError(.notFound, "no sale \(saleID) in the ledger") }
        return (view.orders, view.waitlistPosition)
    }

    /// The sale's definition; NOT_FOUND for an unknown sale.
    public func definition(saleID: String) async throws(ReservationError) -> SaleDefinition {
        try await localSale(saleID).definition
    }

    public static func closedError(_ reason: ClosedReason) -> ReservationError {
        switch reason {
        case .soldOut: ReservationError(.soldOut, "every unit is sold")
        case .ended: ReservationError(.saleEnded, "the sale has ended")
        case .closed: ReservationError(.saleEnded, "the sale was closed")
        }
    }

    /// The view's ledger time is in the past by the time it is read; this instance does not know by how much.
    /// Zero keeps the local window check conservative (it never rejects what the ledger would accept).
    static func wallClockDrift(_ view: LedgerView) -> Int64 { 0 }
}
