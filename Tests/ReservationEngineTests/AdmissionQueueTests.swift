import ReservationEngine
import Testing

@Suite("AdmissionQueue")
struct AdmissionQueueTests {
    // The first parked arrival starts the pump; later ones join it; the head is always the oldest.
    @Test func parksInArrivalOrderWithOnePump() {
        var queue = AdmissionQueue<String>(capacity: 10)
        #expect(queue.isIdle)
        guard case .parked(let first, true) = queue.park(quantity: 1, deadlineMilliseconds: 100, ticket: "a") else {
            Issue.record("the first parked arrival starts the pump"); return
        }
        guard case .parked(let second, false) = queue.park(quantity: 2, deadlineMilliseconds: 100, ticket: "b") else {
            Issue.record("a second arrival joins the running pump"); return
        }
        #expect(first < second)
        #expect(!queue.isIdle, "no direct take while anyone is parked")
        #expect(queue.head?.ticket == "a")
        #expect(queue.popHead().ticket == "a")
        #expect(queue.popHead().ticket == "b")
        #expect(!queue.isIdle, "still pumping until the pump says it stops")
        #expect(queue.pumpShouldContinue() == false)
        #expect(queue.isIdle)
    }

    // Arrival points: one per distinct arrival with the units of everyone up to it, at most `limit`; an
    // arrival stamped before the one parked ahead of it (a wall clock stepping back) counts as simultaneous.
    @Test func arrivalPointsMergeEqualArrivalsAndNeverStepBack() {
        var queue = AdmissionQueue<Int>(capacity: 10)
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 1_000, ticket: 1)
        _ = queue.park(quantity: 2, deadlineMilliseconds: 100, arrivalMicroseconds: 1_000, ticket: 2)
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 900, ticket: 3)
        _ = queue.park(quantity: 2, deadlineMilliseconds: 100, arrivalMicroseconds: 2_000, ticket: 4)
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 3_000, ticket: 5)
        let points = queue.arrivalPoints(limit: 10)
        #expect(points.map(\.arrivalMicroseconds) == [1_000, 2_000, 3_000])
        #expect(points.map(\.cumulativeUnits) == [4, 6, 7])
        let first = queue.arrivalPoints(limit: 2)
        #expect(first.map(\.cumulativeUnits) == [4, 6], "the entries beyond the limit wait for a later lease")
        _ = queue.popHead()
        #expect(queue.arrivalPoints(limit: 10).map(\.cumulativeUnits) == [3, 5, 6])
    }

    // Arrivals the front stamped before the instance saw them park in arrival order: ahead of every parked
    // entry that arrived later, after those that arrived at the same time or earlier. An arrival on the
    // instance's own clock still goes to the tail.
    @Test func frontStampsParkInArrivalOrder() {
        var queue = AdmissionQueue<String>(capacity: 10, recordingGrants: true)
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 2_000, stampedEarlier: true, ticket: "b")
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 3_000, stampedEarlier: true, ticket: "d")
        _ = queue.park(quantity: 2, deadlineMilliseconds: 100, arrivalMicroseconds: 1_000, stampedEarlier: true, ticket: "a")
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 2_000, stampedEarlier: true, ticket: "c")
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 500, ticket: "e")  // own clock, stepped back
        #expect(queue.head?.ticket == "a", "the earliest arrival heads the queue, though it parked third")
        #expect(queue.arrivalPoints(limit: 10).map(\.arrivalMicroseconds) == [1_000, 2_000, 3_000])
        #expect(queue.arrivalPoints(limit: 10).map(\.cumulativeUnits) == [2, 4, 6])
        var order: [String] = []
        while queue.head != nil { order.append(queue.popHead().ticket) }
        #expect(order == ["a", "b", "c", "d", "e"])
        #expect(queue.grantLog == [3, 1, 4, 2, 5], "grants follow arrival, not the order the entries parked")
    }

    // The pump cannot stop while someone is parked: an arrival that parks as it finishes is served.
    @Test func thePumpStopsOnlyWhenEmpty() {
        var queue = AdmissionQueue<Int>(capacity: 10)
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, ticket: 1)
        _ = queue.popHead()
        guard case .parked(_, false) = queue.park(quantity: 1, deadlineMilliseconds: 100, ticket: 2) else {
            Issue.record("the pump is still running: no second pump"); return
        }
        #expect(queue.pumpShouldContinue() == true)
        #expect(queue.popHead().ticket == 2)
        #expect(queue.pumpShouldContinue() == false)
        guard case .parked(_, true) = queue.park(quantity: 1, deadlineMilliseconds: 100, ticket: 3) else {
            Issue.record("after the pump stopped, the next parked arrival starts one"); return
        }
    }

    // Bounded: beyond the capacity an arrival is refused; expired entries leave in order.
    @Test func boundsAndDeadlines() {
        var queue = AdmissionQueue<Int>(capacity: 3)
        for index in 0..<3 { _ = queue.park(quantity: 1, deadlineMilliseconds: Int64(100 * (index + 1)), ticket: index) }
        guard case .full = queue.park(quantity: 1, deadlineMilliseconds: 1_000, ticket: 9) else {
            Issue.record("a full queue refuses"); return
        }
        #expect(queue.takeExpired(nowMilliseconds: 50).isEmpty)
        #expect(queue.takeExpired(nowMilliseconds: 200).map(\.ticket) == [0, 1])
        #expect(queue.count == 1 && queue.head?.ticket == 2)
    }

    // The whole queue goes to the ledger's waitlist in order; entries the ledger sends back (units are free
    // after all) return to the head ahead of everyone who parked meanwhile.
    @Test func takeAllAndRequeueKeepArrivalOrder() {
        var queue = AdmissionQueue<Int>(capacity: 10)
        for index in 0..<4 { _ = queue.park(quantity: 1, deadlineMilliseconds: 100, ticket: index) }
        let all = queue.takeAll()
        #expect(all.map(\.ticket) == [0, 1, 2, 3])
        _ = queue.park(quantity: 1, deadlineMilliseconds: 100, ticket: 4)
        queue.requeue([all[1], all[3]])
        var order: [Int] = []
        while queue.head != nil { order.append(queue.popHead().ticket) }
        #expect(order == [1, 3, 4])
        // Requeued entries take their place by arrival among those parked since: behind one the front stamped
        // earlier, ahead of the rest.
        var stamped = AdmissionQueue<String>(capacity: 10)
        for (arrival, ticket) in [(1_000, "a"), (3_000, "c")] {
            _ = stamped.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: Int64(arrival), stampedEarlier: true, ticket: ticket)
        }
        let out = stamped.takeAll()
        _ = stamped.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 4_000, stampedEarlier: true, ticket: "d")
        _ = stamped.park(quantity: 1, deadlineMilliseconds: 100, arrivalMicroseconds: 2_000, stampedEarlier: true, ticket: "b")
        stamped.requeue(out)
        var merged: [String] = []
        while stamped.head != nil { merged.append(stamped.popHead().ticket) }
        #expect(merged == ["a", "b", "c", "d"])
    }

    // Direct takes while idle draw arrival numbers from the same sequence as parked ones, and the grant
    // log records both in grant order.
    @Test func directTakesShareTheSequence() {
        var queue = AdmissionQueue<Int>(capacity: 4, recordingGrants: true)
        let direct = queue.admitDirectly()
        guard case .parked(let parked, _) = queue.park(quantity: 1, deadlineMilliseconds: 1, ticket: 0) else {
            Issue.record("parks"); return
        }
        #expect(direct < parked)
        _ = queue.popHead()
        #expect(queue.grantLog == [direct, parked])
        #expect(AdmissionQueue<Int>(capacity: 1).grantLog == nil, "off unless asked for")
    }
}
