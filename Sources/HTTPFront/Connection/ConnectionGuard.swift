import Foundation
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// What a connection must do before its first request head reaches Hummingbird.
///
/// Hummingbird's idle handler joins a connection only once its first request head is parsed, and a parse
/// error before that has nobody to answer it: a socket that never sends, or sends its head a byte at a time,
/// or sends garbage, would otherwise stay open for good. These limits close that gap, and cap how many
/// connections one instance holds.
public struct ConnectionLimits: Sendable, Hashable {
    /// Open connections at most (`FLASHSALE_MAX_CONNECTIONS`); beyond it a new one gets 503 and is closed.
    public var maxConnections: Int
    /// How long the first request head may take from its first byte (`FLASHSALE_HEAD_TIMEOUT_SECONDS`): 408.
    public var headTimeoutSeconds: Double
    /// How long a new connection may stay silent (the idle timeout between requests): closed without answer.
    public var idleTimeoutSeconds: Double
    /// Header bytes allowed (the decoder's limit); the whole head may add a request line of up to 8 KiB.
    public var maxHeaderBytes: Int

    public init(maxConnections: Int = ConnectionLimits.defaultMaxConnections, headTimeoutSeconds: Double = 10,
                idleTimeoutSeconds: Double = 60, maxHeaderBytes: Int = 16_384) {
        self.maxConnections = maxConnections
        self.headTimeoutSeconds = headTimeoutSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxHeaderBytes = maxHeaderBytes
    }

    /// What one connection may take from memory, to size the default cap: scripts/conn_memory.py measures
    /// 48 KiB once a connection has placed orders with an Idempotency-Key (an idle one 12 KiB, a live
    /// socket 43 KiB); this leaves room above that. A
    /// TLS connection adds its session and record buffers, which that script does not measure.
    public static let memoryPerConnection = 64 * 1_024
    /// Memory kept for everything but connections (the process at rest, sales, queues, the allocator's slack).
    public static let memoryReserve = 256 * 1_024 * 1_024

    /// The default cap: below the process's open-file limit (with room for Redis, MongoDB and log files);
    /// under a container memory limit, no more connections than fit in it beside `memoryReserve` (a crowd
    /// beyond that gets 503 `RETRY_LATER` on its extra connections instead of the pod being OOM-killed
    /// with every connection on it); at most 50,000.
    public static var defaultMaxConnections: Int {
        defaultMaxConnections(openFiles: openFileLimit, memoryLimitBytes: ContainerMemory.limitBytes())
    }

    static func defaultMaxConnections(openFiles: Int?, memoryLimitBytes: Int?) -> Int {
        var cap = 50_000
        if let openFiles { cap = min(cap, openFiles - 256) }
        if let memoryLimitBytes { cap = min(cap, (memoryLimitBytes - memoryReserve) / memoryPerConnection) }
        return max(64, cap)
    }

    /// The soft open-file limit; nil when unlimited.
    static var openFileLimit: Int? {
        var limit = rlimit()
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur < 1_000_000_000 else { return nil }
        return Int(limit.rlim_cur)
    }
}

/// The memory limit of the container (cgroup) this process runs in, as Kubernetes sets it from
/// `resources.limits.memory`.
public enum ContainerMemory {
    /// cgroup v2 (`memory.max`), then cgroup v1 (`memory.limit_in_bytes`); nil when neither sets a limit.
    public static func limitBytes(root: String = "/sys/fs/cgroup") -> Int? {
        for file in ["\(root)/memory.max", "\(root)/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: file, encoding: .utf8) { return limit(parsing: text) }
        }
        return nil
    }

    /// A limit file's text: bytes, or nil for `max` (v2) or v1's "unlimited" (a page-rounded 2^63 - 1).
    public static func limit(parsing text: String) -> Int? {
        guard let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0, bytes < 1 << 60 else { return nil }
        return bytes
    }
}

/// The open connections of one server.
final class ConnectionCounter: Sendable {
    private let open = Atomic<Int>(0)

    /// Counts a new connection; its number among those open (1 = the only one).
    func opened() -> Int { open.add(1, ordering: .relaxed).newValue }
    func closed() {
        let left = open.subtract(1, ordering: .relaxed).newValue
        assert(left >= 0, "more connections closed than opened")
    }
    var current: Int { open.load(ordering: .relaxed) }
}

/// Wraps a server child channel (here HTTP/1 with the WebSocket upgrade) with a `FirstHeadGuard` at the
/// socket end of the pipeline and a `ParseErrorWatcher` just after the HTTP decoder.
struct GuardedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let limits: ConnectionLimits
    let counter: ConnectionCounter

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let open = counter.opened()
        channel.closeFuture.whenComplete { [counter] _ in counter.closed() }
        let headGuard = FirstHeadGuard(limits: limits, refuse: open > limits.maxConnections, logger: logger)
        do {
            // Behind TLS the guard reads the decrypted bytes (and its idle timer also bounds the handshake).
            if let tls = try? channel.pipeline.syncOperations.context(handlerType: NIOSSLServerHandler.self) {
                try channel.pipeline.syncOperations.addHandler(headGuard, position: .after(tls.handler))
            } else if let proxy = try? channel.pipeline.syncOperations.context(handlerType: ProxyProtocolDecoder.self) {
                try channel.pipeline.syncOperations.addHandler(headGuard, position: .after(proxy.handler))
            } else {
                try channel.pipeline.syncOperations.addHandler(headGuard, position: .first)
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        let boundGuard = NIOLoopBound(headGuard, eventLoop: channel.eventLoop)
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let decoder = try channel.pipeline.syncOperations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(ParseErrorWatcher(headGuard: boundGuard.value), position: .after(decoder.handler))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        var logger = logger
        logger.handler = EarlyCloseLogFilter(base: logger.handler)
        await base.handle(value: value, logger: logger)
    }
}

/// HummingbirdWebSocket logs "Error handling upgrade result" at error level, with error
/// `inappropriateOperationForState`, for every connection that closes before its first request completes:
/// NIO's upgrade handler fails its promise so when it is removed undecided. That is a client that connected
/// and left (a TCP health check, a browser's spare connection, a load generator's probe) or a connection
/// this server closed itself (silent, 408, 431, 503 above), not a server error: it goes to debug. Every
/// other line passes unchanged.
struct EarlyCloseLogFilter: LogHandler {
    var base: any LogHandler
    static let message = "Error handling upgrade result"
    static let errorType = "\(ChannelError.inappropriateOperationForState)"

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level == .error, case .string(Self.errorType)? = event.metadata?["error.type"],
              event.message.description == Self.message else {
            base.log(event: event)
            return
        }
        guard base.logLevel <= .debug else { return }
        var quiet = event
        quiet.level = .debug
        base.log(event: quiet)
    }
}

/// First in the pipeline (raw bytes): closes a connection that stays silent, answers 408 when the first
/// head does not complete in time, 431 when it outgrows the limits, 503 when the server is full; and
/// answers for `ParseErrorWatcher`. After the first head it only passes bytes on.
final class FirstHeadGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State { case silent, receivingHead, passing, answered }

    private let limits: ConnectionLimits
    private let refuse: Bool
    private let logger: Logger
    private(set) var state = State.silent
    private var started = false
    /// When the current state (silent, or receiving the head) runs out; nil once the head is complete or
    /// the connection answered. Each `schedule` arms a timer for its own deadline and, while the connection
    /// lives, never cancels an earlier one: NIO's event loop finds a cancelled timer by a linear scan of
    /// its timer heap, which holds a timer or two per open connection, so with 10,000 connections every
    /// cancel walks thousands of entries. A timer whose deadline is no longer current fires as a no-op.
    private var deadline: NIODeadline?
    /// The timers armed and not yet fired (at most two: the silent one, then the head's). A connection that
    /// closes cancels these, so closed connections leave nothing in the heap; one that lived past them
    /// cancels none.
    private var armed: [(due: NIODeadline, timer: Scheduled<Void>)] = []
    private var context: ChannelHandlerContext?
    /// Why the live route refused this connection's WebSocket upgrade (see `noteRefusedUpgrade`).
    var refusedUpgrade: Problem?
    /// The last four bytes seen, to find the blank line that ends the head across reads.
    private var lastBytes: UInt32 = 0
    private var headBytes = 0

    /// How long a connection refused over the cap has to take its 503 before it is closed regardless.
    static let refusalGrace = TimeAmount.seconds(2)

    init(limits: ConnectionLimits, refuse: Bool, logger: Logger) {
        self.limits = limits
        self.refuse = refuse
        self.logger = logger
    }

    var maxHeadBytes: Int { limits.maxHeaderBytes + 8_192 }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline = nil
        for pending in armed { pending.timer.cancel() }
        armed.removeAll()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        if refuse {
            answer(.serviceUnavailable, code: "RETRY_LATER", title: "Retry later", detail: "this instance holds its maximum of \(limits.maxConnections) connections", retryAfterSeconds: 1)
            // The answer's write may never finish: behind TLS it waits for a handshake the client need not
            // start, and a client that does not read fills the socket. The connection closes either way.
            let channel = context.channel
            let timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.refusalGrace) { channel.close(promise: nil) }
            channel.closeFuture.whenComplete { _ in timer.cancel() }
            return
        }
        schedule(after: limits.idleTimeoutSeconds, context)
    }

    private func schedule(after seconds: Double, _ context: ChannelHandlerContext) {
        let due = NIODeadline.now() + .milliseconds(Int64(seconds * 1_000))
        deadline = due
        let timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [weak self] () -> Void in self?.expired(due) }
        armed.append((due, timer))
        assert(armed.count <= 2, "a connection arms its silent timer, then its head timer")
    }

    private func expired(_ due: NIODeadline) {
        armed.removeAll { $0.due == due }
        guard deadline == due else { return }  // superseded by a later schedule, or the head completed
        deadline = nil
        switch state {
        case .silent:
            // Nothing was asked: nothing to answer.
            context?.close(promise: nil)
        case .receivingHead:
            answer(.requestTimeout, code: "INVALID_REQUEST", title: "Request timeout",
                   detail: "the request head did not arrive within \(Int(limits.headTimeoutSeconds)) s")
        case .passing, .answered:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server is stopping: a connection that never asked anything is closed now, rather than holding the
        // drain until its idle timer fires (a proxy's spare connections, a client that connected ahead).
        if event is ChannelShouldQuiesceEvent, state == .silent {
            state = .answered
            deadline = nil
            context.close(promise: nil)
            return
        }
        // The client closed its side before finishing a head: nothing can be answered to it.
        if case ChannelEvent.inputClosed = event, state == .silent || state == .receivingHead {
            state = .answered
            deadline = nil
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .passing:
            context.fireChannelRead(data)
            return
        case .answered:
            return  // the connection is closing; nothing more reaches the decoder
        case .silent:
            state = .receivingHead
            schedule(after: limits.headTimeoutSeconds, context)
        case .receivingHead:
            break
        }
        let buffer = unwrapInboundIn(data)
        var complete = false
        for byte in buffer.readableBytesView {
            lastBytes = (lastBytes << 8) | UInt32(byte)
            if lastBytes == 0x0D0A_0D0A {
                complete = true
                break
            }
        }
        headBytes += buffer.readableBytes
        if complete {
            deadline = nil
        } else if headBytes > maxHeadBytes {
            answer(.requestHeaderFieldsTooLarge, code: "INVALID_REQUEST", title: "Request header fields too large",
                   detail: "the request head exceeds \(maxHeadBytes) bytes")
            return
        }
        // The decoder parses within this call: a head it refuses is answered (state `answered`) before it
        // returns; a head it accepts hands the connection to Hummingbird.
        context.fireChannelRead(data)
        if complete, state == .receivingHead { state = .passing }
    }

    /// Writes a problem+json answer straight to the socket and closes the connection.
    func answer(_ status: HTTPResponse.Status, code: String, title: String, detail: String, retryAfterSeconds: Int? = nil) {
        guard let context, state != .answered else { return }
        state = .answered
        deadline = nil
        let problem = Problem(status: status, code: code, title: title, detail: detail, retryAfterSeconds: retryAfterSeconds)
        logger.debug("connection refused before its first request", metadata: ["status": "\(status.code)", "detail": "\(detail)"])
        context.writeAndFlush(wrapOutboundOut(Self.closingResponse(problem, allocator: context.channel.allocator))).assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    /// The whole HTTP/1.1 response carrying `problem`, announcing the close.
    static func closingResponse(_ problem: Problem, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = (try? problem.body()) ?? Data()
        var head = "HTTP/1.1 \(problem.status.code) \(problem.status.reasonPhrase)\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\n"
        if let seconds = problem.retryAfterSeconds { head += "Retry-After: \(max(1, seconds))\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\nServer: flashsale\r\n\r\n"
        var buffer = allocator.buffer(capacity: head.utf8.count + body.count)
        buffer.writeString(head)
        buffer.writeBytes(body)
        return buffer
    }

    /// Hummingbird answers every refused WebSocket upgrade with the same empty 400; when the live route
    /// noted why it refused, that answer is replaced by the route's problem (401, 404, 429 ...).
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if let problem = refusedUpgrade, unwrapOutboundIn(data).readableBytesView.starts(with: "HTTP/1.1 400 ".utf8) {
            refusedUpgrade = nil
            context.write(wrapOutboundOut(Self.closingResponse(problem, allocator: context.channel.allocator)), promise: promise)
            return
        }
        context.write(data, promise: promise)
    }

    /// Called by a route that refuses an upgrade on `channel`, before it throws `problem`.
    static func noteRefusedUpgrade(_ problem: Problem, on channel: any Channel) async {
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: FirstHeadGuard.self).refusedUpgrade = problem
        }.get()
    }
}

/// Just after the HTTP decoder: a first head the decoder cannot parse is answered (400, or 431 for oversized
/// header fields) instead of leaving the connection hanging. It never unwraps what passes (HTTP parts, or
/// WebSocket frames after an upgrade), so it can stay in the pipeline for the connection's life.
final class ParseErrorWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private let headGuard: FirstHeadGuard

    init(headGuard: FirstHeadGuard) {
        self.headGuard = headGuard
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After the first head the connection belongs to Hummingbird, which may be writing a response.
        guard let parserError = error as? HTTPParserError, headGuard.state != .passing else {
            context.fireErrorCaught(error)
            return
        }
        if parserError == .headerOverflow {
            headGuard.answer(.requestHeaderFieldsTooLarge, code: "INVALID_REQUEST", title: "Request header fields too large",
                             detail: "the request headers exceed the server's limits")
        } else {
            headGuard.answer(.badRequest, code: "INVALID_REQUEST", title: "Invalid request", detail: "the request is not valid HTTP/1.1 (\(parserError))")
        }
    }
}
