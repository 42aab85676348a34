import Foundation

/// A dedicated OS thread that drains a bounded queue in batches.
///
/// Blocking C libraries (hiredis, libmongoc) must never run on the Swift cooperative pool or on a NIO
/// event loop. Each blocking resource is owned by one `BatchingThread`: producers on any thread call
/// ``submit(_:)``; the thread wakes, takes *everything* that queued while it was busy (at most
/// `maxBatchItems`) and hands it to the handler in arrival order. Under low load a batch holds one item;
/// under high load batches grow by themselves, which is the group-commit behaviour the ledger relies on.
///
/// The queue is bounded (`queueCapacity`): a full queue refuses new items instead of growing.
///
/// An optional linger (``Linger``) makes the batches of a busy thread larger still: after a batch of at least
/// `afterBatchItems`, the thread waits up to `nanoseconds` for more items (or until `maxBatchItems` queued)
/// before taking the next one. Each of its items waits that much longer; a thread whose last batch was smaller
/// never lingers, so under low load the latency stays one round.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`; `handler` runs only on the owned thread.
public final class BatchingThread<Item: Sendable>: @unchecked Sendable {
    public enum SubmitResult: Sendable, Equatable {
        case accepted
        case queueFull
        case stopped
    }

    private enum State {
        case running
        case draining
        case stopped
    }

    /// How long a busy thread waits for its next batch to fill (see the type's documentation).
    public struct Linger: Sendable, Equatable {
        public var afterBatchItems: Int
        public var nanoseconds: UInt64

        /// At most 100 ms: a linger is a batching aid, not a schedule.
        public static var maxNanoseconds: UInt64 { 100_000_000 }

        public init(afterBatchItems: Int, nanoseconds: UInt64) {
            precondition(afterBatchItems > 0, "afterBatchItems must be positive")
            precondition(nanoseconds <= Self.maxNanoseconds, "a linger is at most 100 ms")
            self.afterBatchItems = afterBatchItems
            self.nanoseconds = nanoseconds
        }
    }

    public let name: String
    public let queueCapacity: Int
    public let maxBatchItems: Int
    public let linger: Linger?

    private let condition = NSCondition()
    private var queue: [Item] = []
    private var queueHead = 0
    /// An empty array whose capacity the queue takes over when a whole queue becomes a batch.
    private var spare: [Item] = []
    private var state: State = .running
    /// The size of the batch handed out last (the linger's trigger).
    private var lastBatchCount = 0
    /// Batches taken after a linger (tests and statistics).
    private var lingered = 0
    private let handler: ([Item]) -> Void

    /// - Parameters:
    ///   - handler: called on the owned thread with each batch (never empty, at most `maxBatchItems`).
    ///   - linger: nil (the default) or how a busy thread waits for its next batch to fill.
    public init(name: String, queueCapacity: Int, maxBatchItems: Int, linger: Linger? = nil, handler: @escaping ([Item]) -> Void) {
        precondition(queueCapacity > 0, "queueCapacity must be positive")
        precondition(maxBatchItems > 0, "maxBatchItems must be positive")
        self.name = name
        self.queueCapacity = queueCapacity
        self.maxBatchItems = maxBatchItems
        self.linger = linger.flatMap { $0.nanoseconds > 0 ? $0 : nil }
        self.handler = handler
        let thread = Thread { [self] in self.runLoop() }
        thread.name = name
        thread.start()
    }

    /// The number of items waiting (not counting the batch being handled).
    public var queuedCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count - queueHead
    }

    /// Queues one item; never blocks.
    @discardableResult
    public func submit(_ item: consuming Item) -> SubmitResult {
        condition.lock()
        defer { condition.unlock() }
        guard case .running = state else { return .stopped }
        guard queue.count - queueHead < queueCapacity else { return .queueFull }
        queue.append(item)
        // the first item wakes an idle thread; a full batch ends a linger
        let queued = queue.count - queueHead
        if queued == 1 || queued == maxBatchItems { condition.signal() }
        return .accepted
    }

    /// How many batches were taken after a linger.
    public var lingeredBatches: Int {
        condition.lock()
        defer { condition.unlock() }
        return lingered
    }

    /// Stops intake, lets the thread handle everything already queued, and waits until it has exited.
    public func shutdown() {
        condition.lock()
        if case .running = state { state = .draining }
        condition.broadcast()
        while true {
            if case .stopped = state { break }
            condition.wait()
        }
        condition.unlock()
    }

    private func runLoop() {
        while var batch = nextBatch() {
            assert(!batch.isEmpty && batch.count <= maxBatchItems)
            handler(batch)
            recycle(&batch)
        }
    }

    /// Blocks until there is work; returns nil once draining is complete.
    private func nextBatch() -> [Item]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.count == queueHead {
            if case .draining = state {
                state = .stopped
                condition.broadcast()
                return nil
            }
            condition.wait()
        }
        if let linger, lastBatchCount >= linger.afterBatchItems {
            waitForMore(linger)
        }
        let available = queue.count - queueHead
        lastBatchCount = min(available, maxBatchItems)
        if queueHead == 0, available <= maxBatchItems {
            // The common case: everything queued is the batch. The storage changes hands (no copy of the
            // items); the previous batch's storage, emptied, takes the queue's place.
            let batch = queue
            queue = spare
            spare = []
            return batch
        }
        let take = min(available, maxBatchItems)
        let batch = Array(queue[queueHead..<(queueHead + take)])
        queueHead += take
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        } else if queueHead >= 4096, queueHead * 2 >= queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        return batch
    }

    /// Waits (the lock held, released while waiting) until `maxBatchItems` queued, the thread is told to stop,
    /// or `linger.nanoseconds` passed on the monotonic clock. Bounded by that time: each wait is for what is
    /// left of it.
    private func waitForMore(_ linger: Linger) {
        let start = DispatchTime.now().uptimeNanoseconds
        var waited = false
        while queue.count - queueHead < maxBatchItems, case .running = state {
            let elapsed = DispatchTime.now().uptimeNanoseconds &- start
            guard elapsed < linger.nanoseconds else { break }
            waited = true
            _ = condition.wait(until: Date(timeIntervalSinceNow: Double(linger.nanoseconds - elapsed) / 1e9))
        }
        if waited { lingered += 1 }
    }

    /// Hands a handled batch's storage back (emptied, capacity kept) for the queue to reuse.
    private func recycle(_ batch: inout [Item]) {
        batch.removeAll(keepingCapacity: true)
        condition.lock()
        defer { condition.unlock() }
        if spare.capacity < batch.capacity { swap(&spare, &batch) }
    }
}
