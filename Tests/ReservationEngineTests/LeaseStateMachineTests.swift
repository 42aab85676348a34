import ReservationEngine
import Testing

@Suite("LeaseStateMachine")
struct LeaseStateMachineTests {
    let grant = LeaseStateMachine.Grant(shardID: "a#1", fence: 9, units: 50, deadlineMilliseconds: 2_000)

    // requested -> active -> renewing (near the deadline) -> active again on renewal.
    @Test func renewalCycle() {
        var machine = LeaseStateMachine(renewMarginMilliseconds: 500)
        #expect(machine.granted(grant) == .openBucket(grant))
        #expect(machine.isSelling)
        #expect(machine.tick(nowMilliseconds: 1_000) == .none)
        #expect(machine.tick(nowMilliseconds: 1_600) == .sendRenew(shardID: "a#1", fence: 9))
        #expect(machine.isSelling, "still selling while the renewal is in flight")
        #expect(machine.renewed(deadlineMilliseconds: 3_600) == .none)
        guard case .active(let renewed) = machine.state else { Issue.record("expected active"); return }
        #expect(renewed.deadlineMilliseconds == 3_600)
    }

    // No renewal before the local deadline: the bucket closes (a paused instance stops selling by itself).
    @Test func deadlinePassedClosesBucket() {
        var machine = LeaseStateMachine(renewMarginMilliseconds: 500)
        _ = machine.granted(grant)
        _ = machine.tick(nowMilliseconds: 1_600)
        #expect(machine.tick(nowMilliseconds: 2_000) == .closeBucket)
        #expect(!machine.isSelling)
        // A late renewal does not reopen it: the units are handed back instead.
        #expect(machine.renewed(deadlineMilliseconds: 4_000) == .closeBucketAndReturn(shardID: "a#1", fence: 9))
        #expect(machine.state == .returned)
    }

    // A lost lease (fenced) closes the bucket from any live state and stays fenced.
    @Test(arguments: [0, 1_600, 2_100])
    func lostFromAnyLiveState(tickAt: Int64) {
        var machine = LeaseStateMachine(renewMarginMilliseconds: 500)
        _ = machine.granted(grant)
        _ = machine.tick(nowMilliseconds: tickAt)
        #expect(machine.lost() == .closeBucket)
        #expect(machine.state == .fenced)
        #expect(machine.tick(nowMilliseconds: 5_000) == .none)
        #expect(machine.returnRequested() == .none)
    }

    // Returning an active lease closes the bucket and sends the return exactly once.
    @Test func returnOnce() {
        var machine = LeaseStateMachine(renewMarginMilliseconds: 500)
        _ = machine.granted(grant)
        #expect(machine.returnRequested() == .closeBucketAndReturn(shardID: "a#1", fence: 9))
        #expect(machine.returnRequested() == .none)
        #expect(machine.lost() == .none)
    }

    // A denied request ends returned without ever opening a bucket.
    @Test func denied() {
        var machine = LeaseStateMachine(renewMarginMilliseconds: 500)
        machine.denied()
        #expect(machine.state == .returned)
        #expect(!machine.isSelling)
    }
}
