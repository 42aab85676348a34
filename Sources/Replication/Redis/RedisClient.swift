/// Async access to Redis for code on the cooperative pool: one ``RedisConnection`` owned by one
/// dedicated ``BatchingThread``. Each call is queued (bounded) and runs on that thread in order; the
/// caller's task is suspended, never blocked.
///
/// Use it for control-plane traffic (readiness, admin, lease management). The hot commit path has its
/// own connection and thread in the group committer.
public final class RedisClient: Sendable {
    private typealias Job = @Sendable (Result<RedisConnection, RedisError>) -> Void

    private let thread: BatchingThread<Job>
    public let configuration: RedisConfiguration

    /// Does not connect eagerly: the service must start (and say it is not ready) while Redis is down.
    public init(configuration: RedisConfiguration, name: String = "redis-client", queueCapacity: Int = 4_096) {
        self.configuration = configuration
        let holder = ConnectionHolder(configuration: configuration)
        self.thread = BatchingThread(name: name, queueCapacity: queueCapacity, maxBatchItems: 64) { jobs in
            for job in jobs { job(holder.connection()) }
        }
    }

    /// Runs `body` with the connection on the client's thread. Errors from connecting surface here.
    public func withConnection<Value: Sendable>(
        _ body: @escaping @Sendable (RedisConnection) throws(RedisError) -> Value
    ) async throws(RedisError) -> Value {
        let outcome: Result<Value, RedisError> = await withCheckedContinuation { continuation in
            let job: Job = { connectionResult in
                let connection: RedisConnection
                switch connectionResult {
                case .success(let ready): connection = ready
                case .failure(let error):
                    continuation.resume(returning: .failure(error))
                    return
                }
                do throws(RedisError) {
                    continuation.resume(returning: .success(try body(connection)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            switch thread.submit(job) {
            case .accepted: break
            case .queueFull: continuation.resume(returning: .failure(RedisError(.queueFull, "Redis client queue is full")))
            case .stopped: continuation.resume(returning: .failure(RedisError(.shutDown, "Redis client is shut down")))
            }
        }
        return try outcome.get()
    }

    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply {
        try await withConnection { connection throws(RedisError) in try connection.send(command) }
    }

    public func evaluate(_ script: RedisScript, keys: [String], arguments: RedisCommand = RedisCommand()) async throws(RedisError) -> RedisReply {
        try await withConnection { connection throws(RedisError) in
            try connection.evaluate(script, keys: keys, arguments: arguments)
        }
    }

    /// Stops intake, finishes queued jobs, closes the connection.
    public func shutdown() {
        thread.shutdown()
    }
}

/// Owns the connection of a ``RedisClient``; touched only on the client's thread.
private final class ConnectionHolder: @unchecked Sendable {
    private let configuration: RedisConfiguration
    private var current: RedisConnection?

    init(configuration: RedisConfiguration) {
        self.configuration = configuration
    }

    /// The connection, created lazily; an error when Redis cannot be reached right now.
    func connection() -> Result<RedisConnection, RedisError> {
        if let current { return .success(current) }
        do throws(RedisError) {
            let fresh = try RedisConnection(configuration: configuration)
            current = fresh
            return .success(fresh)
        } catch {
            return .failure(error)
        }
    }
}
