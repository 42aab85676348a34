import Foundation

/// Where and how to reach Redis.
///
/// With ``sentinels`` set, `host`/`port` are only a fallback: every (re)connection asks the Sentinels
/// for the current primary of ``masterName`` and checks with `ROLE` that it is one, so the service follows
/// a failover by itself. A connection that meets `READONLY` (it reached a demoted primary) is dropped and
/// resolves again.
public struct RedisConfiguration: Sendable, Hashable {
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public var host: String
    public var port: Int
    /// Redis Sentinels to ask for the primary (empty: connect to `host:port` directly).
    public var sentinels: [Endpoint] = []
    /// Seed nodes of a Redis Cluster (empty: not a cluster). When set, `host`/`port` are not used: the
    /// connection reads the slot map from these nodes and sends each sale's commands to the master that owns
    /// its slot (see ``ClusterRouter``). An alternative to ``sentinels``, not a combination.
    public var clusterNodes: [Endpoint] = []
    /// The primary's name in the Sentinels' configuration.
    public var masterName = "flashsale"
    /// Replicas that must acknowledge a commit batch (`WAIT`) before its customers are answered; 0 = none.
    /// With 1 and a replica, a confirmed order survives the loss of the primary's host and a failover.
    public var replicaAcks = 0
    /// How long a commit waits for ``replicaAcks``; when it passes, the batch's customers are told to
    /// retry (their orders exist; the same Idempotency-Key returns them).
    public var replicaAckTimeoutMilliseconds = 1_000
    public var username: String?
    public var password: String?
    /// Credentials for the Sentinels themselves (their `requirepass`/ACL), apart from the primary's: the
    /// connections to the primary a Sentinel names use ``username``/``password`` like a direct one.
    public var sentinelUsername: String?
    public var sentinelPassword: String?
    public var database: Int
    public var connectTimeoutMilliseconds: Int
    /// Upper bound on waiting for one reply; after it the connection is discarded (outcome unknown).
    public var commandTimeoutMilliseconds: Int

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeoutMilliseconds: Int = 1_000,
        commandTimeoutMilliseconds: Int = 2_000
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.commandTimeoutMilliseconds = commandTimeoutMilliseconds
    }

    /// Parses `redis://[[username]:password@]host[:port][/database]`.
    public init(url: String) throws(RedisError) {
        let prefix = "redis://"
        guard url.hasPrefix(prefix) else {
            throw RedisError(.invalidConfiguration, "Redis URL must start with redis:// (got \(url.debugDescription))")
        }
        var rest = Substring(url.dropFirst(prefix.count))
        self.init()
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : String(user).removingPercentEncodingIfPossible
                password = String(credentials[credentials.index(after: colon)...]).removingPercentEncodingIfPossible
            } else {
                password = String(credentials).removingPercentEncodingIfPossible
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let databaseText = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !databaseText.isEmpty {
                guard let database = Int(databaseText), database >= 0 else {
                    throw RedisError(.invalidConfiguration, "invalid database number in Redis URL: \(databaseText)")
                }
                self.database = database
            }
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let port = Int(rest[rest.index(after: colon)...]), (1...65_535).contains(port) else {
                throw RedisError(.invalidConfiguration, "invalid port in Redis URL \(url.debugDescription)")
            }
            self.port = port
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else {
            throw RedisError(.invalidConfiguration, "missing host in Redis URL \(url.debugDescription)")
        }
        host = String(rest)
    }
}

extension RedisConfiguration {
    /// Parses `host:port,host:port` (the `FLASHSALE_REDIS_SENTINELS` and `FLASHSALE_REDIS_CLUSTER_NODES` form).
    public static func endpoints(_ list: String, naming what: String = "Sentinel") throws(RedisError) -> [Endpoint] {
        var endpoints: [Endpoint] = []
        for item in list.split(separator: ",") {
            let text = item.trimmingCharacters(in: .whitespaces)
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port),
                  colon != text.startIndex else {
                throw RedisError(.invalidConfiguration, "a \(what) address is host:port, got \(text.debugDescription)")
            }
            endpoints.append(Endpoint(host: String(text[..<colon]), port: port))
        }
        guard !endpoints.isEmpty, endpoints.count <= 16 else {
            throw RedisError(.invalidConfiguration, "between 1 and 16 \(what) addresses are needed, got \(endpoints.count)")
        }
        return endpoints
    }
}

extension String {
    /// Decodes `%XX` escapes; leaves the text as it is when it is not valid percent-encoding.
    fileprivate var removingPercentEncodingIfPossible: String {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
               let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else if byte == UInt8(ascii: "%") {
                return self
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
