import ServiceLifecycle

extension RedisClient: Service {
    /// Keeps the client open for the life of the service group; on graceful shutdown it finishes the
    /// queued jobs and closes the connection.
    public func run() async throws {
        try? await gracefulShutdown()
        shutdown()
    }
}
