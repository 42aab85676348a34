import Replication

/// Configuration of `flashsale serve`; see the README table for the environment variables.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var redis: RedisConfiguration
    public var jwtSecret: String
    public var instanceID: String

    public init(host: String = "127.0.0.1", port: Int = 8080, redis: RedisConfiguration = RedisConfiguration(), jwtSecret: String, instanceID: String) {
        self.host = host
        self.port = port
        self.redis = redis
        self.jwtSecret = jwtSecret
        self.instanceID = instanceID
    }
}
