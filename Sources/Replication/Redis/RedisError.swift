/// An operating error of the Redis layer, with a stable ``code`` callers can switch on.
public struct RedisError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Stable error codes; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// The TCP connection (or AUTH/SELECT after it) could not be established.
        public static let connectionFailed = Code("REDIS_CONNECTION_FAILED")
        /// No answer within the configured timeout. Whether the command ran is unknown.
        public static let timeout = Code("REDIS_TIMEOUT")
        /// The connection broke while a command was in flight. Whether it ran is unknown.
        public static let connectionLost = Code("REDIS_CONNECTION_LOST")
        /// The server sent something that is not RESP.
        public static let protocolError = Code("REDIS_PROTOCOL_ERROR")
        /// The server answered with an error reply (`-ERR ...`).
        public static let serverError = Code("REDIS_SERVER_ERROR")
        /// The configuration or URL is invalid.
        public static let invalidConfiguration = Code("REDIS_INVALID_CONFIGURATION")
        /// The client's bounded queue is full; nothing was sent.
        public static let queueFull = Code("REDIS_QUEUE_FULL")
        /// The client was shut down; nothing was sent.
        public static let shutDown = Code("REDIS_SHUT_DOWN")
        /// A write was applied but fewer replicas than required acknowledged it in time (`WAIT`).
        public static let notReplicated = Code("REDIS_NOT_REPLICATED")
        /// No Sentinel named a reachable primary.
        public static let noPrimary = Code("REDIS_NO_PRIMARY")
        /// Redis Cluster could not take the command now: no node answered with a map, the slot has no master
        /// (`CLUSTERDOWN`), too many redirections, or the slot kept migrating (`TRYAGAIN`). Nothing was applied
        /// unless the error says the connection broke.
        public static let clusterUnavailable = Code("REDIS_CLUSTER_UNAVAILABLE")
        /// A reply did not have the shape the caller expected.
        public static let unexpectedReply = Code("REDIS_UNEXPECTED_REPLY")

        public var description: String { rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// True when the command may or may not have been executed by the server.
    public var outcomeUnknown: Bool { code == .timeout || code == .connectionLost }

    public var description: String { "\(code): \(message)" }
}
