import Glibc
import ReservationEngine
import Synchronization

/// The wall clock in microseconds since 1970: a customer's arrival, compared across instances (whose clocks
/// are kept in step by NTP; a skew of d makes the fleet's order exact only to within d). Shifted by
/// ``faultClockOffsetMilliseconds``, as a host with a skewed clock would read it.
public func wallClockMicroseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000 + faultClockOffsetMilliseconds * 1_000
}

/// Fault injection only: `FLASHSALE_FAULT_CLOCK_OFFSET_MS` (at most a day either way) shifts this process's
/// view of the wall clock, as a host with a skewed clock would see it (the chaos suite's clock-offset scenario;
/// libfaketime cannot be used with jemalloc). Never set in production. The ledger's decisions read Redis `TIME`.
public let faultClockOffsetMilliseconds: Int64 = {
    guard let text = getenv("FLASHSALE_FAULT_CLOCK_OFFSET_MS").map({ String(cString: $0) }), let offset = Int64(text),
          abs(offset) <= 86_400_000 else { return 0 }
    return offset
}()

/// A reservation waiting in a sale's admission queue: what it asks for, and how to answer it.
struct ParkedReservation: Sendable {
    struct Request: Sendable {
        let customerID: String
        let quantity: Int
        let orderID: String
        let idempotencyKey: String
        let delivery: String
        /// When the front stamped the customer's arrival, if it did (see `ReservationService.reserve`).
        var arrivalMicroseconds: Int64? = nil
    }

    let request: Request
    let continuation: CheckedContinuation<Admission, Never>
}

/// How admission ended for one reservation.
enum Admission: Sendable {
    /// Units taken from this bucket: commit them.
    case granted(TokenBucket)
    /// Decided without a commit of this instance: waitlisted, served from the waitlist, or refused.
    case decided(ReservationOutcome)
}

extension ReservationService {
    /// FIFO admission (ARCHITECTURE.md, "Admission"): take units directly while nobody is parked, otherwise
    /// park in arrival order and let the sale's pump serve the queue.
    func admit(sale: LocalSale, _ request: ParkedReservation.Request) async -> Admission {
        let direct = sale.admission.withLock { queue -> TokenBucket? in
            guard queue.isIdle, let bucket = sale.take(request.quantity) else { return nil }
            queue.admitDirectly()
            return bucket
        }
        if let direct { return .granted(direct) }
        let deadline = monotonicMilliseconds + Int64(configuration.admissionDeadlineMilliseconds)
        // A front's stamp is trusted only as far as the clocks agree: never later than now, and never so early
        // that it would jump customers who waited longer than a request may take to get here.
        let now = wallClockMicroseconds()
        let arrival = request.arrivalMicroseconds.map { min(now, max($0, now - Self.frontStampWindowMicroseconds)) } ?? now
        return await withCheckedContinuation { continuation in
            enum Decision { case took(TokenBucket), parked(startPump: Bool), full }
            let decision = sale.admission.withLock { queue -> Decision in
                // Checked again under the lock: the queue may have emptied since the first look.
                if queue.isIdle, let bucket = sale.take(request.quantity) {
                    queue.admitDirectly()
                    return .took(bucket)
                }
                switch queue.park(quantity: request.quantity, deadlineMilliseconds: deadline, arrivalMicroseconds: arrival,
                                  stampedEarlier: request.arrivalMicroseconds != nil,
                                  ticket: ParkedReservation(request: request, continuation: continuation)) {
                case .parked(_, let startPump): return .parked(startPump: startPump)
                case .full: return .full
                }
            }
            switch decision {
            case .took(let bucket):
                continuation.resume(returning: .granted(bucket))
            case .full:
                continuation.resume(returning: .decided(.rejected(
                    ReservationError(.retryLater, "too many customers are waiting on this instance; try again"), retryAfterSeconds: 1)))
            case .parked(let startPump):
                if startPump { startAdmissionPump(sale: sale) }
            }
        }
    }

    /// The pump is a task owned by the sale (its handle is kept and awaited at shutdown), alive only while
    /// customers are parked: it ends as soon as the queue is empty.
    private func startAdmissionPump(sale: LocalSale) {
        let task = Task { await self.pumpAdmission(sale: sale) }
        sale.state.withLock { $0.admissionPump = task }
    }

    /// Serves the queue head first, in arrival order, until nobody is parked: grants units while the
    /// buckets have them, leases more when they do not, and hands the whole queue to the ledger's waitlist
    /// (in order) when the ledger has no unit to lease. Bounded: each round grants, or makes one ledger
    /// call (bounded by the Redis timeouts); rounds without progress are capped.
    func pumpAdmission(sale: LocalSale) async {
        var idleRounds = 0
        // A lease request with arrivals may leave this instance's first waiting customer in the ledger (the
        // arrival order across instances); when the queue empties otherwise it is withdrawn, so that other
        // instances' customers do not wait for it to go stale.
        var mayHaveLeftHead = false
        // Arrivals go with leases sized to demand (the ledger orders those across instances).
        let sendArrivals = configuration.leaseToDemand
        while true {
            let now = monotonicMilliseconds
            let (expired, granted, needed, demand, arrivals) = sale.admission.withLock {
                queue -> ([ParkedReservation], [(ParkedReservation, TokenBucket)], Int?, Int, [ArrivalPoint]) in
                let expired = queue.takeExpired(nowMilliseconds: now).map(\.ticket)
                var granted: [(ParkedReservation, TokenBucket)] = []
                while let head = queue.head, let bucket = sale.take(head.quantity) {
                    granted.append((queue.popHead().ticket, bucket))
                }
                guard queue.pumpShouldContinue() else { return (expired, granted, nil, 0, []) }
                guard sendArrivals else { return (expired, granted, queue.head?.quantity, queue.parkedUnits, []) }
                // What the buckets still hold goes to the first parked customers: the lease is for those after.
                let held = sale.availableLocally
                let arrivals = queue.arrivalPoints(limit: ArrivalPoint.maximumPerLease).compactMap { point -> ArrivalPoint? in
                    guard point.cumulativeUnits > held else { return nil }
                    return ArrivalPoint(arrivalMicroseconds: point.arrivalMicroseconds, cumulativeUnits: point.cumulativeUnits - held)
                }
                return (expired, granted, queue.head?.quantity, queue.parkedUnits, arrivals)
            }
            for parked in expired {
                parked.continuation.resume(returning: .decided(.rejected(
                    ReservationError(.retryLater, "waited too long for a unit on this instance; try again"), retryAfterSeconds: 1)))
            }
            for (parked, bucket) in granted { parked.continuation.resume(returning: .granted(bucket)) }
            guard let needed else {
                if mayHaveLeftHead { await withdrawArrivalHead(sale: sale) }
                return
            }
            idleRounds = granted.isEmpty ? idleRounds + 1 : 0
            if idleRounds > Self.admissionIdleRoundsLimit {
                decideAll(sale: sale, .rejected(ReservationError(.retryLater, "no lease could be had for the waiting customers; try again"), retryAfterSeconds: 1))
                continue
            }

            if needed > 1, sale.availableLocally >= needed {
                await consolidate(sale: sale)
            }
            // A lease sized to what the parked customers need (minus what the buckets still hold), plus as
            // much again for those arriving while it is granted and committed: without that headroom every
            // arrival parks behind the pump's next round trip and the instance never leaves the pump. The
            // ledger caps it at the fair share, so across instances units still follow the customers who
            // wait for them, in the order the ledger grants the leases.
            let missing = max(needed, demand - sale.availableLocally)
            let result = await refill(sale: sale, minimumUnits: needed, demandUnits: sendArrivals ? 2 * missing : nil, arrivals: arrivals)
            if !arrivals.isEmpty { mayHaveLeftHead = true }
            switch result {
            case .granted:
                continue
            case .retry:
                // Another refill finished, or the lease cap is reached while buckets drain: look again shortly.
                try? await Task.sleep(for: .milliseconds(1))
            case .notDueBefore(let due):
                // Not before then; at most 20 ms between looks, so customers past their deadline are answered.
                let wait = min(max(due - wallClockMicroseconds(), 1_000), 20_000)
                try? await Task.sleep(for: .microseconds(wait))
            case .empty:
                mayHaveLeftHead = false  // an EMPTY answer withdrew it
                await handToWaitlist(sale: sale)
            case .closed(let reason):
                decideAll(sale: sale, .rejected(Self.closedError(reason), retryAfterSeconds: nil))
            case .notStarted(let milliseconds):
                decideAll(sale: sale, .rejected(ReservationError(.saleNotStarted, "the sale has not started"), retryAfterSeconds: Int((milliseconds + 999) / 1_000)))
            case .notFound:
                decideAll(sale: sale, .rejected(ReservationError(.notFound, "no sale \(sale.definition.id)"), retryAfterSeconds: nil))
            case .unavailable(let error):
                decideAll(sale: sale, .rejected(ReservationError(.retryLater, "the ledger is unreachable (\(error.code))"), retryAfterSeconds: 1))
            }
        }
    }

    /// Best effort: a head left behind goes stale by itself within the ledger's HEAD_FRESH_MS (500 ms).
    private func withdrawArrivalHead(sale: LocalSale) async {
        let saleID = sale.definition.id
        let owner = configuration.instanceID
        _ = try? await committer.perform(saleID: saleID) { ledger throws(RedisError) in
            try ledger.clearArrivalHead(saleID: saleID, owner: owner)
        }
    }

    /// How far before its own clock an instance accepts the front's arrival stamp (see `admit`).
    static let frontStampWindowMicroseconds: Int64 = 10_000_000

    /// Rounds in a row without a grant after which the parked customers are told to retry. Each such round
    /// is a ledger call or a 1 ms pause, so this is well beyond the admission deadline: a guard against a
    /// loop that cannot progress, not a timeout (the deadline is that).
    static let admissionIdleRoundsLimit = 20_000

    /// Answers every parked reservation the same way (the sale closed, the ledger is away).
    private func decideAll(sale: LocalSale, _ outcome: ReservationOutcome) {
        let parked = sale.admission.withLock { $0.takeAll() }
        for entry in parked { entry.ticket.continuation.resume(returning: .decided(outcome)) }
    }

    /// The ledger has no unit to lease, but other leases (or pending commits) hold some: every parked
    /// reservation joins the ledger's waitlist, in arrival order, in one call through the committer. The
    /// ledger may serve some at once; where it says units are free after all, those go back to the head
    /// of the queue, in their order, for the next lease.
    ///
    /// The joins are sent one by one: when one fails (its outcome unknown), the later ones are not sent. Each
    /// customer gets what happened to their own join: the earlier ones their place or their order, the failed
    /// one and those never sent 503 (for those, truly nothing was reserved; the failed one retries under its key).
    private func handToWaitlist(sale: LocalSale) async {
        let parked = sale.admission.withLock { $0.takeAll() }
        guard !parked.isEmpty else { return }
        let saleID = sale.definition.id
        let owner = configuration.instanceID
        let limit = sale.definition.perCustomerLimit
        let requests = parked.map(\.ticket.request)
        let failingJoin = configuration.faultFailingWaitlistJoin
        let outcomes: [Result<WaitlistOutcome, RedisError>]
        do {
            outcomes = try await committer.perform(saleID: saleID) { ledger throws(RedisError) -> [Result<WaitlistOutcome, RedisError>] in
                var outcomes: [Result<WaitlistOutcome, RedisError>] = []
                outcomes.reserveCapacity(requests.count)
                for (index, request) in requests.enumerated() {
                    // Once the sale is closed every later entry gets the same answer without a call; once a join
                    // failed, the connection's state is unknown and the later ones are not sent.
                    if let last = outcomes.last {
                        switch last {
                        case .success(.closed), .failure:
                            outcomes.append(last)
                            continue
                        default: break
                        }
                    }
                    do throws(RedisError) {
                        if index == failingJoin { throw RedisError(.connectionLost, "injected: the join was not sent") }
                        outcomes.append(.success(try ledger.joinWaitlist(
                            saleID: saleID, owner: owner, customerID: request.customerID, quantity: request.quantity, orderID: request.orderID,
                            idempotencyKey: request.idempotencyKey, delivery: request.delivery)))
                    } catch {
                        outcomes.append(.failure(error))
                    }
                }
                return outcomes
            }
        } catch {
            // Nothing was sent (no connection, a full queue, a stop).
            outcomes = Array(repeating: .failure(error), count: parked.count)
        }
        precondition(outcomes.count == parked.count, "one waitlist outcome per parked reservation")
        var again: [AdmissionQueue<ParkedReservation>.Entry] = []
        for (entry, result) in zip(parked, outcomes) {
            let decided: ReservationOutcome
            let outcome: WaitlistOutcome
            switch result {
            case .success(let known): outcome = known
            case .failure(let error):
                entry.ticket.continuation.resume(returning: .decided(.rejected(
                    ReservationError(.retryLater, "the ledger is unreachable (\(error.code))"), retryAfterSeconds: 1)))
                continue
            }
            switch outcome {
            case .waiting(let position): decided = .waitlisted(position: position)
            case .served(let record), .duplicate(let record): decided = .confirmed(record)
            case .retry:
                again.append(entry)
                continue
            case .limitExceeded:
                decided = .rejected(ReservationError(.limitExceeded, "at most \(limit) units per customer"), retryAfterSeconds: nil)
            case .insufficientStock(let unsold):
                decided = .rejected(ReservationError(.insufficientStock, unsold == 1 ? "only 1 unit is left" : "only \(unsold) units are left"), retryAfterSeconds: nil)
            case .closed(let reason):
                closeLocally(sale: sale, reason: reason)
                decided = .rejected(Self.closedError(reason), retryAfterSeconds: nil)
            case .notStarted(let milliseconds):
                decided = .rejected(ReservationError(.saleNotStarted, "the sale has not started"), retryAfterSeconds: Int((milliseconds + 999) / 1_000))
            case .notFound:
                decided = .rejected(ReservationError(.notFound, "no sale \(saleID)"), retryAfterSeconds: nil)
            }
            entry.ticket.continuation.resume(returning: .decided(decided))
        }
        if !again.isEmpty { sale.admission.withLock { $0.requeue(again) } }
    }
}
