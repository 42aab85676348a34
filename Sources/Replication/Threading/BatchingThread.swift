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

    public let name: String
    public let queueCapacity: Int
    public let maxBatchItems: Int

    private let condition = NSCondition()
    private var queue: [Item] = []
    private var queueHead = 0
    /// An empty array whose capacity the queue takes over when a whole queue becomes a batch.
    private var spare: [Item] = []
    private var state: State = .running
    private let handler: ([Item]) -> Void

    /// - Parameters:
    ///   - handler: called on the owned thread with each batch (never empty, at most `maxBatchItems`).
    public init(name: String, queueCapacity: Int, maxBatchItems: Int, handler: @escaping ([Item]) -> Void) {
        precondition(queueCapacity > 0, "queueCapacity must be positive")
        precondition(maxBatchItems > 0, "maxBatchItems must be positive")
        self.name = name
        self.queueCapacity = queueCapacity
        self.maxBatchItems = maxBatchItems
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
        if queue.count - queueHead == 1 { condition.signal() }
        return .accepted
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
        let available = queue.count - queueHead
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

    /// Hands a handled batch's storage back (emptied, capacity kept) for the queue to reuse.
    private func recycle(_ batch: inout [Item]) {
        batch.removeAll(keepingCapacity: true)
        condition.lock()
        defer { condition.unlock() }
        if spare.capacity < batch.capacity { swap(&spare, &batch) }
    }
}
