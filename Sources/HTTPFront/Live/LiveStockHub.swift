import Foundation
import Logging
import Replication
import ReservationEngine
import ServiceLifecycle
import Synchronization

/// Fans live stock out to every WebSocket of this instance.
///
/// Every 100 ms, for each sale with open sockets, the hub reads the instance's global view of the sale
/// (refreshed by the reconciler; no Redis call per socket), encodes ONE frame and hands the same string
/// to every socket, only when a number changed. Each socket's buffer holds the newest few frames, so a slow
/// client skips stale numbers instead of growing memory. At close every socket gets a `closed` message.
public final class LiveStockHub: Service, Sendable {
    public static let pushIntervalMilliseconds = 100
    /// Frames buffered per socket; older ones are dropped for slow clients.
    static let socketBufferFrames = 4

    private struct SaleSockets {
        var sockets: [UInt64: AsyncStream<String>.Continuation] = [:]
        var customers: [UInt64: String] = [:]
        /// Each customer's sockets, oldest first (at most `socketsPerCustomer`).
        var byCustomer: [CustomerKey: [UInt64]] = [:]
        var lastNumbers: String?
    }

    private let engine: ReservationService
    private let logger: Logger
    private let sales = Mutex<[String: SaleSockets]>([:])
    private let nextID = Atomic<UInt64>(0)

    public init(engine: ReservationService, logger: Logger) {
        self.engine = engine
        self.logger = logger
        engine.onWaitersServed { [weak self] saleID, served in self?.announce(saleID: saleID, served: served) }
    }

    /// Tells each served customer's sockets on this instance that their waitlist entry became an order.
    func announce(saleID: String, served: [ServedWaiter]) {
        let byCustomer = Dictionary(grouping: served) { CustomerKey($0.customerID) }
        let deliveries = sales.withLock { sales -> [(AsyncStream<String>.Continuation, ServedWaiter)] in
            guard let entry = sales[saleID] else { return [] }
            var result: [(AsyncStream<String>.Continuation, ServedWaiter)] = []
            for (id, customer) in entry.customers {
                guard let continuation = entry.sockets[id], let mine = byCustomer[CustomerKey(customer)] else { continue }
                for waiter in mine { result.append((continuation, waiter)) }
            }
            return result
        }
        for (continuation, waiter) in deliveries {
            continuation.yield(#"{"type":"waitlist","status":"confirmed","orderId":"\#(waiter.orderID)","quantity":\#(waiter.quantity)}"#)
        }
    }

    /// Open sockets across all sales (for metrics and tests).
    public var socketCount: Int { sales.withLock { $0.values.reduce(0) { $0 + $1.sockets.count } } }

    /// Sockets one customer may hold on one sale on this instance; a new one beyond it closes the oldest
    /// (with the policy close code: the customer's newest page keeps working).
    public static let socketsPerCustomer = 8
    /// Sent down a socket's stream to make its handler close it with the policy code (never sent to a client).
    static let policyCloseFrame = "\u{0}policy-close"

    /// Registers a socket; the stream ends when the sale closes or the hub stops.
    func subscribe(saleID: String, customerID: String) -> (id: UInt64, frames: AsyncStream<String>) {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(Self.socketBufferFrames))
        let evicted = sales.withLock { sales -> AsyncStream<String>.Continuation? in
            var entry = sales[saleID, default: SaleSockets()]
            defer { sales[saleID] = entry }
            entry.sockets[id] = continuation
            entry.customers[id] = customerID
            guard !customerID.isEmpty else { return nil }
            let key = CustomerKey(customerID)
            entry.byCustomer[key, default: []].append(id)
            guard let mine = entry.byCustomer[key], mine.count > Self.socketsPerCustomer, let oldest = mine.first else { return nil }
            entry.byCustomer[key]?.removeFirst()
            entry.customers[oldest] = nil
            return entry.sockets.removeValue(forKey: oldest)
        }
        if let evicted {
            evicted.yield(Self.policyCloseFrame)
            evicted.finish()
        }
        return (id, stream)
    }

    func unsubscribe(saleID: String, id: UInt64) {
        let continuation = sales.withLock { sales -> AsyncStream<String>.Continuation? in
            let removed = sales[saleID]?.sockets.removeValue(forKey: id)
            if let customer = sales[saleID]?.customers.removeValue(forKey: id), !customer.isEmpty {
                let key = CustomerKey(customer)
                sales[saleID]?.byCustomer[key]?.removeAll { $0 == id }
                if sales[saleID]?.byCustomer[key]?.isEmpty == true { sales[saleID]?.byCustomer[key] = nil }
            }
            if sales[saleID]?.sockets.isEmpty == true { sales[saleID] = nil }
            return removed
        }
        continuation?.finish()
    }

    /// The current frame of a sale (sent on connect).
    func currentFrame(saleID: String) async -> (frame: String, closedReason: ClosedReason?)? {
        guard let definition = try? await engine.definition(saleID: saleID),
              let view = try? await engine.stock(saleID: saleID) else { return nil }
        return (Self.stockFrame(definition: definition, view: view), view.status == .closed ? (view.closedReason ?? .ended) : nil)
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await pushOnce()
            try? await cancelWhenGracefulShutdown {
                try await Task.sleep(for: .milliseconds(Self.pushIntervalMilliseconds))
            }
        }
        let all = sales.withLock { sales in
            defer { sales.removeAll() }
            return sales.values.flatMap { $0.sockets.values }
        }
        for continuation in all { continuation.finish() }
    }

    /// One push round: one encoded frame per sale with sockets, fanned out when the numbers changed.
    func pushOnce() async {
        let saleIDs = sales.withLock { Array($0.keys) }
        for saleID in saleIDs {
            guard let definition = try? await engine.definition(saleID: saleID),
                  let view = try? await engine.stock(saleID: saleID) else { continue }
            let numbers = "\(view.available)/\(view.sold)/\(view.status)/\(view.waitlist)"
            let frame = Self.stockFrame(definition: definition, view: view)
            let closing = view.status == .closed
            if closing, sales.withLock({ $0[saleID] != nil }) {
                // Waiters served by the last units are told before their sockets close.
                await engine.announceServedWaiters(saleID: saleID)
            }
            let targets = sales.withLock { sales -> [AsyncStream<String>.Continuation] in
                guard var entry = sales[saleID], entry.lastNumbers != numbers || closing else { return [] }
                entry.lastNumbers = numbers
                if closing {
                    sales[saleID] = nil
                } else {
                    sales[saleID] = entry
                }
                return Array(entry.sockets.values)
            }
            guard !targets.isEmpty else { continue }
            for continuation in targets { continuation.yield(frame) }
            if closing {
                let closed = Self.closedFrame(view.closedReason ?? .ended)
                for continuation in targets {
                    continuation.yield(closed)
                    continuation.finish()
                }
            }
        }
    }

    static func stockFrame(definition: SaleDefinition, view: LedgerView) -> String {
        let status = SaleWindow(definition: definition).status(nowMilliseconds: Timestamps.nowMilliseconds, ledgerStatus: view.status)
        return #"{"type":"stock","available":\#(view.available),"sold":\#(view.sold),"status":"\#(status.rawValue)","waitlist":\#(view.waitlist),"asOf":"\#(Timestamps.format(milliseconds: view.ledgerNowMilliseconds))"}"#
    }

    static func closedFrame(_ reason: ClosedReason) -> String {
        #"{"type":"closed","reason":"\#(reason.rawValue)"}"#
    }
}
