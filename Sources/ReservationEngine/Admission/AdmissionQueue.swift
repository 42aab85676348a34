import DequeModule

/// First-come-first-served admission inside one instance, for one sale, as a value: no I/O, no clock.
///
/// A reservation that finds the local buckets short does not spin or give up: it parks here, in arrival
/// order. One pump at a time serves the queue: it grants units to the head while the buckets have them,
/// asks the ledger for a lease when they do not, and when the ledger has no unit to lease it moves the
/// whole queue, in order, to the ledger's waitlist. A later arrival never takes a unit while an earlier one
/// is parked: a direct take is allowed only while the queue is idle (empty and no pump running), and the
/// caller makes that decision and the take under the same lock as this value.
///
/// Bounds: at most `capacity` parked entries (beyond it, an arrival is refused); each entry carries a
/// deadline after which the pump hands it back unserved.
public struct AdmissionQueue<Ticket: Sendable>: Sendable {
    public struct Entry: Sendable {
        /// Admission order within the queue's lifetime (strictly increasing in the order entries parked; the
        /// queue itself is in arrival order, which differs only for arrivals stamped by the front: see `park`).
        public let sequence: UInt64
        public let quantity: Int
        /// Monotonic milliseconds after which the entry leaves the queue unserved.
        public let deadlineMilliseconds: Int64
        /// When it arrived, on the wall clock (microseconds since 1970): instances compare these to serve
        /// the fleet's customers in arrival order (see `arrivalPoints`).
        public let arrivalMicroseconds: Int64
        public let ticket: Ticket
    }

    public enum ParkResult: Sendable {
        /// Parked; `startPump` says the caller must start the (single) pump.
        case parked(sequence: UInt64, startPump: Bool)
        /// The queue is full: the arrival is refused (overload).
        case full
    }

    public let capacity: Int
    /// Parked entries, oldest first. A ring buffer: a crowd parks thousands, and popping the head must not
    /// shift them all on every grant.
    public private(set) var entries = Deque<Entry>()
    public private(set) var pumping = false
    private var nextSequence: UInt64 = 1
    /// With `recordingGrants`, the arrival number of every grant (direct or from the queue) in grant order,
    /// up to a million (for tests that check the order; off in service).
    public private(set) var grantLog: [UInt64]?

    public init(capacity: Int, recordingGrants: Bool = false) {
        precondition(capacity >= 1, "an admission queue holds at least one entry")
        self.capacity = capacity
        self.grantLog = recordingGrants ? [] : nil
    }

    private mutating func logGrant(_ sequence: UInt64) {
        if grantLog != nil, grantLog!.count < 1_000_000 { grantLog!.append(sequence) }
    }

    /// Nobody is parked and no pump runs: an arrival may take units directly.
    public var isIdle: Bool { entries.isEmpty && !pumping }

    public var count: Int { entries.count }

    /// Units the parked entries ask for, in all (what a lease for them needs at most).
    public private(set) var parkedUnits = 0

    /// Records a direct take (made while idle) as the next arrival; answers its arrival number.
    @discardableResult
    public mutating func admitDirectly() -> UInt64 {
        precondition(isIdle, "a direct take only while the queue is idle")
        defer { nextSequence += 1 }
        logGrant(nextSequence)
        return nextSequence
    }

    /// Parks an arrival in arrival order.
    ///
    /// `stampedEarlier`: the arrival was stamped before the request reached this instance (the front's
    /// `X-Request-Start`), so customers can reach the instance in another order than they arrived: the entry
    /// goes ahead of every parked entry that arrived later. Otherwise the arrival is the instance's clock read
    /// now, and the entry goes at the tail: a wall clock may step back, so an arrival is never stamped before
    /// the one parked ahead of it.
    public mutating func park(quantity: Int, deadlineMilliseconds: Int64, arrivalMicroseconds: Int64 = 0, stampedEarlier: Bool = false,
                              ticket: Ticket) -> ParkResult {
        precondition(quantity >= 1, "park at least one unit")
        guard entries.count < capacity else { return .full }
        let sequence = nextSequence
        nextSequence += 1
        let tail = entries.last?.arrivalMicroseconds ?? 0
        var index = entries.count
        if stampedEarlier {
            // Bounded by the queue's capacity; a front hands customers over nearly in order, so the walk is short.
            while index > 0, entries[index - 1].arrivalMicroseconds > arrivalMicroseconds { index -= 1 }
        }
        let arrival = index == entries.count ? max(arrivalMicroseconds, tail) : arrivalMicroseconds
        entries.insert(Entry(sequence: sequence, quantity: quantity, deadlineMilliseconds: deadlineMilliseconds,
                             arrivalMicroseconds: arrival, ticket: ticket), at: index)
        assert(index == 0 || entries[index - 1].arrivalMicroseconds <= arrival, "entries stay in arrival order")
        assert(index == entries.count - 1 || arrival <= entries[index + 1].arrivalMicroseconds, "entries stay in arrival order")
        parkedUnits += quantity
        let startPump = !pumping
        pumping = true
        return .parked(sequence: sequence, startPump: startPump)
    }

    /// The parked entries as points (arrival, units of the entries up to it), oldest first: one point per
    /// distinct arrival, at most `limit` points (the entries beyond are left for a later lease).
    public func arrivalPoints(limit: Int) -> [(arrivalMicroseconds: Int64, cumulativeUnits: Int)] {
        precondition(limit >= 1)
        var points: [(arrivalMicroseconds: Int64, cumulativeUnits: Int)] = []
        var units = 0
        for entry in entries {
            units += entry.quantity
            if let last = points.last, last.arrivalMicroseconds == entry.arrivalMicroseconds {
                points[points.count - 1].cumulativeUnits = units
            } else {
                guard points.count < limit else { break }
                points.append((entry.arrivalMicroseconds, units))
            }
        }
        assert(zip(points, points.dropFirst()).allSatisfy { $0.arrivalMicroseconds < $1.arrivalMicroseconds }, "points ascend")
        return points
    }

    /// The entry to serve next (the oldest), if any.
    public var head: Entry? { entries.first }

    /// Removes and answers the head: it was granted units.
    public mutating func popHead() -> Entry {
        precondition(pumping, "only the pump serves the queue")
        precondition(!entries.isEmpty, "pop from an empty admission queue")
        let head = entries.removeFirst()
        parkedUnits -= head.quantity
        assert(parkedUnits >= 0)
        logGrant(head.sequence)
        return head
    }

    /// Removes and answers every parked entry, oldest first (the whole queue goes to the ledger's
    /// waitlist, or the sale closed).
    public mutating func takeAll() -> [Entry] {
        precondition(pumping, "only the pump serves the queue")
        defer {
            entries.removeAll(keepingCapacity: true)
            parkedUnits = 0
        }
        return Array(entries)
    }

    /// Puts entries taken out earlier back (the ledger answered that units are free after all), in arrival
    /// order among those parked since: ahead of every one of them that did not arrive earlier, so they keep
    /// their place (only an entry the front stamped earlier can be ahead of them).
    public mutating func requeue(_ earlier: [Entry]) {
        precondition(pumping, "only the pump serves the queue")
        guard !earlier.isEmpty else { return }
        precondition(zip(earlier, earlier.dropFirst()).allSatisfy { $0.arrivalMicroseconds <= $1.arrivalMicroseconds },
                     "requeued entries keep their order")
        var merged = Deque<Entry>()
        merged.reserveCapacity(entries.count + earlier.count)
        var next = earlier.makeIterator()
        var pending = next.next()
        for entry in entries {
            while let requeued = pending, requeued.arrivalMicroseconds <= entry.arrivalMicroseconds {
                merged.append(requeued)
                pending = next.next()
            }
            merged.append(entry)
        }
        while let requeued = pending {
            merged.append(requeued)
            pending = next.next()
        }
        entries = merged
        parkedUnits += earlier.reduce(0) { $0 + $1.quantity }
    }

    /// Removes and answers the entries whose deadline passed, oldest first.
    public mutating func takeExpired(nowMilliseconds: Int64) -> [Entry] {
        guard entries.contains(where: { $0.deadlineMilliseconds <= nowMilliseconds }) else { return [] }
        let expired: [Entry] = entries.filter { $0.deadlineMilliseconds <= nowMilliseconds }
        entries.removeAll { $0.deadlineMilliseconds <= nowMilliseconds }
        parkedUnits -= expired.reduce(0) { $0 + $1.quantity }
        return expired
    }

    /// The pump is about to stop: it stops only when nobody is parked (answers false then); otherwise it
    /// must go on (answers true), so an entry parked while it was finishing is never left without a pump.
    public mutating func pumpShouldContinue() -> Bool {
        precondition(pumping, "only the pump stops the pump")
        if entries.isEmpty {
            pumping = false
            return false
        }
        return true
    }
}
