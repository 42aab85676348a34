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
}
