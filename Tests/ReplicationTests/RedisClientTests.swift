import Foundation
import Replication
import Synchronization
import Testing
import TestSupport

@Suite("RedisClient and BatchingThread")
struct RedisClientTests {
    // 200 concurrent tasks share one client; each INCR runs exactly once, in some order.
    @Test func concurrentTasksShareOneConnection() async throws {
        let server = try RedisServer()
        let client = RedisClient(configuration: server.configuration)
        defer { client.shutdown() }
        try await withThrowingTaskGroup(of: Int64?.self) { group in
            for _ in 0..<200 {
                group.addTask { try await client.send(RedisCommand("INCR", "hits")).integer }
            }
            var seen = Set<Int64>()
            for try await value in group { seen.insert(try #require(value)) }
            #expect(seen == Set(1...200))
        }
    }

    // While Redis is down the client answers a typed error; once it is back the client recovers.
    @Test func clientRecoversWhenRedisReturns() async throws {
        let server = try RedisServer()
        let client = RedisClient(configuration: server.configuration)
        defer { client.shutdown() }
        #expect(try await client.send(RedisCommand("SET", "k", "v")) == .status("OK"))
        server.shutdown()
        await #expect(throws: RedisError.self) { try await client.send(RedisCommand("PING")) }
        try server.restart()
        #expect(try await client.send(RedisCommand("GET", "k")) == .bulk(Array("v".utf8)))
    }

    // The queue is bounded: a full queue refuses, shutdown drains what was accepted and then refuses.
    @Test func batchingThreadIsBoundedAndDrains() throws {
        let gate = NSCondition()
        let released = Mutex(false)
        let handled = Mutex<[Int]>([])
        let batches = Mutex<[Int]>([])
        let thread = BatchingThread<Int>(name: "test", queueCapacity: 4, maxBatchItems: 3) { items in
            gate.lock()
            while !released.withLock({ $0 }) { gate.wait() }
            gate.unlock()
            handled.withLock { $0.append(contentsOf: items) }
            batches.withLock { $0.append(items.count) }
        }
        #expect(thread.submit(0) == .accepted)
        // Wait until the thread holds item 0 in its (blocked) handler.
        while thread.queuedCount > 0 { Thread.sleep(forTimeInterval: 0.001) }
        for item in 1...4 { #expect(thread.submit(item) == .accepted) }
        #expect(thread.submit(5) == .queueFull)
        gate.lock()
        released.withLock { $0 = true }
        gate.broadcast()
        gate.unlock()
        thread.shutdown()
        #expect(thread.submit(6) == .stopped)
        #expect(handled.withLock { $0 } == [0, 1, 2, 3, 4])
        #expect(batches.withLock { $0 } == [1, 3, 1], "batches take what queued, at most maxBatchItems")
    }

    // A linger makes a busy thread's batches larger: after a batch of at least `afterBatchItems` the next one waits
    // (the linger) for more; after a smaller batch nothing waits; a shutdown ends a linger and loses nothing.
    @Test func aBusyBatchingThreadLingers() throws {
        let gate = NSCondition()
        let open = Mutex(true)
        let batches = Mutex<[[Int]]>([])
        let linger: UInt64 = 100_000_000
        let thread = BatchingThread<Int>(name: "linger", queueCapacity: 64, maxBatchItems: 8,
                                         linger: .init(afterBatchItems: 2, nanoseconds: linger)) { items in
            gate.lock()
            while !open.withLock({ $0 }) { gate.wait() }
            gate.unlock()
            batches.withLock { $0.append(items) }
        }
        func handled(_ count: Int) throws {
            let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
            while batches.withLock({ $0.count }) < count {
                guard DispatchTime.now().uptimeNanoseconds < deadline else { throw RedisServerError("batch \(count) not handled in 10 s") }
                Thread.sleep(forTimeInterval: 0.001)
            }
        }
        func setOpen(_ value: Bool) {
            gate.lock()
            open.withLock { $0 = value }
            gate.broadcast()
            gate.unlock()
        }
        // `first` is held in the handler while `second` and `third` queue; then all three are handled, the last two
        // as one batch (2 items: the thread is busy).
        func pileUp(_ first: Int, _ second: Int, _ third: Int, handledBatches: Int) throws {
            setOpen(false)
            #expect(thread.submit(first) == .accepted)
            while thread.queuedCount > 0 { Thread.sleep(forTimeInterval: 0.001) }
            #expect(thread.submit(second) == .accepted && thread.submit(third) == .accepted)
            setOpen(true)
            try handled(handledBatches)
        }
        // A lone item on an idle thread: no linger.
        #expect(thread.submit(0) == .accepted)
        try handled(1)
        #expect(thread.lingeredBatches == 0)
        // Two items pile up behind a blocked batch: they go together, and that batch (2) makes the thread busy.
        try pileUp(1, 2, 3, handledBatches: 3)
        #expect(thread.lingeredBatches == 0, "the batch before was one item")
        // The next item waits for company for the whole linger (none came), then goes alone.
        let sent = DispatchTime.now().uptimeNanoseconds
        #expect(thread.submit(4) == .accepted)
        try handled(4)
        #expect(DispatchTime.now().uptimeNanoseconds - sent >= linger * 9 / 10, "it lingered")
        #expect(thread.lingeredBatches == 1)
        // That batch was one item: the next one does not wait.
        #expect(thread.submit(5) == .accepted)
        try handled(5)
        #expect(thread.lingeredBatches == 1)
        // Busy again, then an item and at once a shutdown: the linger ends and the item is handled.
        try pileUp(6, 7, 8, handledBatches: 7)
        #expect(thread.submit(9) == .accepted)
        thread.shutdown()
        #expect(batches.withLock { $0 } == [[0], [1], [2, 3], [4], [5], [6], [7, 8], [9]])
    }
}
