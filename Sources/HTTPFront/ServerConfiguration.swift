import Replication

/// Configuration of `flashsale serve`; see the README table for the environment variables.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var redis: RedisConfiguration
    public var jwtSecret: String
    public var instanceID: String
    /// Requests per second per customer (burst twice that); 0 turns the limit off.
    public var rateLimitPerCustomer: Double
    /// Requests per second per client address (burst twice that); 0 turns the limit off.
    public var rateLimitPerAddress: Double
    public var engine: EngineConfiguration

    public init(
        host: String = "127.0.0.1", port: Int = 8080, redis: RedisConfiguration = RedisConfiguration(), jwtSecret: String,
        instanceID: String, rateLimitPerCustomer: Double = 20, rateLimitPerAddress: Double = 2_000, engine: EngineConfiguration? = nil
    ) {
        self.host = host
        self.port = port
        self.redis = redis
        self.jwtSecret = jwtSecret
        self.instanceID = instanceID
        self.rateLimitPerCustomer = rateLimitPerCustomer
        self.rateLimitPerAddress = rateLimitPerAddress
        self.engine = engine ?? EngineConfiguration(instanceID: instanceID)
    }
}
