import CHiredis
import Foundation

/// A blocking connection to Redis over hiredis.
///
/// Threading model: a `RedisConnection` is owned by exactly one thread and is deliberately not
/// `Sendable`. Every call blocks that thread until Redis answers or the command timeout passes, so it must
/// never run on the Swift cooperative pool or a NIO event loop. Async code reaches Redis through
/// ``RedisClient`` (which owns one connection on its own ``BatchingThread``) or through a component that
/// owns its own thread, like the group committer.
///
/// The connection owns its `redisContext` and frees it exactly once. After a timeout or a broken socket
/// the context is discarded (the outcome of that command is unknown and is reported as such); the next
/// call reconnects. A connection the server closed while idle (`CLIENT KILL`, a restart) is detected
/// before the next command is sent and replaced transparently, so nothing is sent twice.
///
/// With ``RedisConfiguration/clusterNodes`` set, the connection speaks to a Redis Cluster: it keeps one plain
/// connection per master and sends each command to the one that owns its key's slot (``ClusterRouter``).
public final class RedisConnection {
    public let configuration: RedisConfiguration
    private var context: UnsafeMutablePointer<redisContext>?
    /// The digests of the scripts loaded on the current server (``RedisScript/digest``).
    private var loadedScripts: Set<String> = []
    /// How many times a fresh TCP connection was made (1 after the first command).
    public private(set) var connectCount = 0
    /// The server of the current (or last) connection: the configured one, or the primary a Sentinel named.
    public var endpoint: RedisConfiguration.Endpoint { cluster?.endpoint ?? directEndpoint }
    private var directEndpoint: RedisConfiguration.Endpoint
    /// Routing to the masters of a Redis Cluster, when one is configured.
    let cluster: ClusterRouter?

    /// Creates the connection and connects eagerly, so that a wrong address fails here.
    public init(configuration: RedisConfiguration) throws(RedisError) {
        self.configuration = configuration
        self.directEndpoint = RedisConfiguration.Endpoint(host: configuration.host, port: configuration.port)
        if configuration.clusterNodes.isEmpty {
            cluster = nil
            try connect()
        } else {
            let router = try ClusterRouter(configuration: configuration)
            cluster = router
            try router.readMap()
        }
    }

    deinit {
        if let context { redisFree(context) }
    }

    public var isConnected: Bool { cluster?.isConnected ?? (context != nil) }

    /// The masters of a cluster's last slot map (empty without a cluster).
    public var clusterMasters: [RedisConfiguration.Endpoint] { cluster?.knownMasters ?? [] }

    /// On Redis Cluster, the master that owned `key`'s slot in the last slot map read (no command is sent); nil
    /// without a cluster or when no master did.
    public func lastKnownClusterOwner(ofKey key: String) -> RedisConfiguration.Endpoint? {
        cluster?.lastKnownOwner(of: ClusterSlots.slot(of: key))
    }

    /// On Redis Cluster, `body` on each master of the slot map, each master with its result (see
    /// ``ClusterRouter/eachMaster(_:)``). Nil without a cluster; throws when no node gives a slot map.
    public func eachClusterMaster<Value>(_ body: (RedisConnection) throws(RedisError) -> Value) throws(RedisError) -> [(master: RedisConfiguration.Endpoint, result: Result<Value, RedisError>)]? {
        try cluster?.eachMaster(body)
    }

    /// Closes the socket (every node's, in a cluster); the next command reconnects.
    public func close() {
        cluster?.close()
        if let context { redisFree(context) }
        context = nil
    }

    // MARK: Commands

    /// Sends one command and waits for its reply. A server error comes back as `.error`.
    public func send(_ command: RedisCommand) throws(RedisError) -> RedisReply {
        precondition(command.count > 0, "a Redis command needs a name")
        if let cluster { return try cluster.send(command) }
        let context = try readyContext()
        let raw = Self.withArgv(command) { argc, argv, lengths in
            redisCommandArgv(context, argc, argv, lengths)
        }
        guard let raw else { throw discard(context) }
        defer { freeReplyObject(raw) }
        let reply = Self.convert(raw.assumingMemoryBound(to: redisReply.self))
        dropIfDemoted(reply)
        return reply
    }

    /// A `READONLY` answer means this server is no longer the primary (a failover demoted it): close, so the
    /// next command resolves the primary again. The command itself was refused, not applied.
    private func dropIfDemoted(_ reply: RedisReply) {
        if case .error(let message) = reply, Self.isDemotion(message) { close() }
    }

    /// Whether a server error says the server is not (or no longer) a writable primary.
    public static func isDemotion(_ message: String) -> Bool {
        message.hasPrefix("READONLY") || message.hasPrefix("MASTERDOWN")
    }

    /// Convenience for textual commands: `try connection.send("SET", "key", "value")`.
    public func send(_ name: String, _ arguments: String...) throws(RedisError) -> RedisReply {
        var command = RedisCommand()
        command.append(name)
        for argument in arguments { command.append(argument) }
        return try send(command)
    }

    /// Pipelining: writes every command, then reads every reply, in one round trip's worth of latency.
    /// Replies come back in command order; server errors are `.error` elements.
    public func pipeline(_ commands: [RedisCommand]) throws(RedisError) -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        if let cluster { return try cluster.pipeline(commands) }
        let context = try readyContext()
        for command in commands {
            precondition(command.count > 0, "a Redis command needs a name")
            let status = Self.withArgv(command) { argc, argv, lengths in
                redisAppendCommandArgv(context, argc, argv, lengths)
            }
            guard status == REDIS_OK else { throw discard(context) }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands.indices {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else { throw discard(context) }
            replies.append(Self.convert(raw.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(raw)
        }
        for reply in replies { dropIfDemoted(reply) }
        return replies
    }

    /// Runs a script with `EVALSHA`, loading it first if needed and again after `NOSCRIPT`.
    public func evaluate(_ script: RedisScript, keys: [String], arguments: RedisCommand = RedisCommand()) throws(RedisError) -> RedisReply {
        if let cluster { return try cluster.evaluate(script, keys: keys, arguments: arguments) }
        for attempt in 0..<2 {
            let digest = try digest(of: script)
            var command = RedisCommand()
            command.reserveCapacity(arguments: 3 + keys.count + arguments.count, bytes: 64 + arguments.bytes.count)
            command.append("EVALSHA")
            command.append(digest)
            command.append(keys.count)
            for key in keys { command.append(key) }
            command.append(contentsOf: arguments)
            let reply = try send(command)
            if case .error(let message) = reply, message.hasPrefix("NOSCRIPT"), attempt == 0 {
                loadedScripts.remove(script.digest)
                continue
            }
            return reply
        }
        preconditionFailure("unreachable: the second attempt always returns")
    }

    /// Loads a script now (at start-up, so that readiness means scripts are loaded).
    @discardableResult
    public func load(_ script: RedisScript) throws(RedisError) -> String {
        if let cluster { return try cluster.load(script) }
        loadedScripts.remove(script.digest)
        return try digest(of: script)
    }

    /// Loads a script unless this connection already loaded it on the current server.
    public func ensureLoaded(_ script: RedisScript) throws(RedisError) {
        if let cluster { return try cluster.ensureLoaded(script) }
        if !loadedScripts.contains(script.digest) || !isConnected { _ = try digest(of: script) }
    }

    private func digest(of script: RedisScript) throws(RedisError) -> String {
        if loadedScripts.contains(script.digest) { return script.digest }
        let reply = try send(RedisCommand("SCRIPT", "LOAD", script.source)).throwingServerError()
        // The server names a script by the SHA1 of its source: any other answer means the EVALSHA that
        // follows would run something else, or nothing.
        guard reply.string == script.digest else {
            throw RedisError(.unexpectedReply, "SCRIPT LOAD of \(script.name) answered \(reply), expected \(script.digest)")
        }
        loadedScripts.insert(script.digest)
        return script.digest
    }

    // MARK: Connection management

    /// Returns a context that is connected and whose peer has not closed it; reconnects otherwise.
    private func readyContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        if let context, !Self.peerClosed(context) { return context }
        close()
        try connect()
        guard let context else { preconditionFailure("connect() returned without a context") }
        return context
    }

    private func connect() throws(RedisError) {
        precondition(context == nil, "connect() over a live context would leak it")
        if configuration.sentinels.isEmpty {
            try connect(to: RedisConfiguration.Endpoint(host: configuration.host, port: configuration.port))
            return
        }
        // A Sentinel may still name a primary it is demoting: trust the server's own answer. While a failover
        // is in progress (the named server is a replica already), ask again for up to a second: a hand-over
        // completes within it, and the commits waiting on this thread are then made instead of refused.
        var attempt = 0
        while true {
            let primary = try Self.primaryFromSentinels(configuration)
            try connect(to: primary)
            let role = try send(RedisCommand("ROLE"))
            if role.array?.first?.string == "master" { return }
            close()
            attempt += 1
            guard attempt < Self.failoverPolls else {
                throw RedisError(.noPrimary, "\(primary) is not a primary (ROLE answered \(role)); a failover is in progress")
            }
            usleep(Self.failoverPollMicroseconds)
        }
    }

    /// How often, and how far apart, ``connect()`` asks the Sentinels again while the primary they name is a
    /// replica (a failover in progress): 10 x 100 ms.
    static let failoverPolls = 10
    static let failoverPollMicroseconds: UInt32 = 100_000

    /// Asks each Sentinel in turn (bounded by their number) for the primary's address.
    private static func primaryFromSentinels(_ configuration: RedisConfiguration) throws(RedisError) -> RedisConfiguration.Endpoint {
        var failures: [String] = []
        for sentinel in configuration.sentinels {
            var direct = configuration
            direct.sentinels = []
            direct.host = sentinel.host
            direct.port = sentinel.port
            direct.password = configuration.sentinelPassword
            direct.username = configuration.sentinelPassword == nil ? nil : configuration.sentinelUsername
            direct.database = 0
            do throws(RedisError) {
                let connection = try RedisConnection(configuration: direct)
                let reply = try connection.send(RedisCommand("SENTINEL", "get-master-addr-by-name", configuration.masterName))
                if let address = reply.array, address.count == 2, let host = address[0].string, let port = address[1].integer.map(Int.init) {
                    return RedisConfiguration.Endpoint(host: host, port: port)
                }
                failures.append("\(sentinel): \(reply)")
            } catch {
                failures.append("\(sentinel): \(error.message)")
            }
        }
        throw RedisError(.noPrimary, "no Sentinel named a primary for \(configuration.masterName): \(failures.joined(separator: "; "))")
    }

    private func connect(to target: RedisConfiguration.Endpoint) throws(RedisError) {
        directEndpoint = target
        let connectTimeout = Self.timeval(milliseconds: configuration.connectTimeoutMilliseconds)
        guard let fresh = redisConnectWithTimeout(target.host, Int32(target.port), connectTimeout) else {
            throw RedisError(.connectionFailed, "cannot allocate a hiredis context")
        }
        if fresh.pointee.err != 0 {
            let message = Self.errorText(fresh)
            redisFree(fresh)
            throw RedisError(.connectionFailed, "\(target): \(message)")
        }
        guard redisSetTimeout(fresh, Self.timeval(milliseconds: configuration.commandTimeoutMilliseconds)) == REDIS_OK else {
            redisFree(fresh)
            throw RedisError(.connectionFailed, "cannot set the command timeout")
        }
        _ = redisEnableKeepAlive(fresh)
        context = fresh
        connectCount += 1
        loadedScripts.removeAll()
        do {
            if let password = configuration.password {
                var auth = RedisCommand("AUTH")
                if let username = configuration.username { auth.append(username) }
                auth.append(password)
                try sendOnFreshContext(auth)
            }
            if configuration.database != 0 {
                try sendOnFreshContext(RedisCommand("SELECT", String(configuration.database)))
            }
        } catch {
            close()
            throw RedisError(.connectionFailed, "handshake failed: \(error.message)")
        }
    }

    private func sendOnFreshContext(_ command: RedisCommand) throws(RedisError) {
        guard let context else { throw RedisError(.connectionLost, "connection closed during handshake") }
        let raw = Self.withArgv(command) { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) }
        guard let raw else { throw discard(context) }
        defer { freeReplyObject(raw) }
        try Self.convert(raw.assumingMemoryBound(to: redisReply.self)).throwingServerError()
    }

    /// Turns the context's error into a typed error and drops the context: its state is unknown.
    private func discard(_ failed: UnsafeMutablePointer<redisContext>) -> RedisError {
        precondition(failed == context, "discarding a context this connection does not own")
        let code = failed.pointee.err
        let message = Self.errorText(failed)
        let savedErrno = errno
        close()
        switch code {
        case REDIS_ERR_IO where savedErrno == EAGAIN || savedErrno == EWOULDBLOCK:
            return RedisError(.timeout, "no reply within \(configuration.commandTimeoutMilliseconds) ms")
        case REDIS_ERR_IO, REDIS_ERR_EOF:
            return RedisError(.connectionLost, message)
        case REDIS_ERR_PROTOCOL:
            return RedisError(.protocolError, message)
        default:
            return RedisError(.connectionLost, message)
        }
    }

    /// True when the server closed an idle connection (or sent something unsolicited, which RESP2
    /// never does outside pub/sub): such a socket must not be used for the next command.
    private static func peerClosed(_ context: UnsafeMutablePointer<redisContext>) -> Bool {
        var descriptor = pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, 0)
        if ready == 0 { return false }
        return true
    }

    // MARK: C helpers

    private static func timeval(milliseconds: Int) -> Glibc.timeval {
        Glibc.timeval(tv_sec: milliseconds / 1_000, tv_usec: (milliseconds % 1_000) * 1_000)
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
    }

    /// Calls `body` with argc/argv/argvlen pointing into the command's flat buffer (no copies).
    private static func withArgv<Result>(
        _ command: RedisCommand,
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> Result
    ) -> Result {
        command.bytes.withUnsafeBufferPointer { bytes in
            command.lengths.withUnsafeBufferPointer { lengths in
                withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: lengths.count) { argv in
                    let empty: StaticString = ""
                    let emptyPointer = UnsafeRawPointer(empty.utf8Start).assumingMemoryBound(to: CChar.self)
                    var offset = 0
                    for (index, length) in lengths.enumerated() {
                        if let base = bytes.baseAddress, length > 0 {
                            argv[index] = UnsafeRawPointer(base + offset).assumingMemoryBound(to: CChar.self)
                        } else {
                            argv[index] = emptyPointer
                        }
                        offset += length
                    }
                    precondition(offset == bytes.count, "RedisCommand lengths do not cover its bytes")
                    return body(Int32(lengths.count), argv.baseAddress!, lengths.baseAddress!)
                }
            }
        }
    }

    /// Copies a hiredis reply tree into Swift values. `depth` bounds recursion on hostile input.
    private static func convert(_ reply: UnsafeMutablePointer<redisReply>, depth: Int = 0) -> RedisReply {
        precondition(depth < 64, "Redis reply nested deeper than 64 levels")
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .bulk(bytes(value.str, value.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(Int(value.elements))
            for index in 0..<Int(value.elements) {
                if let element = value.element[index] {
                    elements.append(convert(element, depth: depth + 1))
                } else {
                    elements.append(.null)
                }
            }
            return .array(elements)
        default:
            return .error("unknown hiredis reply type \(value.type)")
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }
}
