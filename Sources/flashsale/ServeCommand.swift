import ArgumentParser
import CJemalloc
import Foundation
import HTTPFront
import Hummingbird
import Logging
import Replication
import ServiceLifecycle
import UnixSignals

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the HTTP API (flags override the FLASHSALE_* environment variables)."
    )

    @Option(help: "Address to bind (FLASHSALE_HOST, default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (FLASHSALE_PORT, default 8080).")
    var port: Int?

    @Option(name: .customLong("redis-url"), help: "Ledger Redis (FLASHSALE_REDIS_URL, default redis://127.0.0.1:6379).")
    var redisURL: String?

    @Option(name: .customLong("jwt-secret"), help: "HS256 secret for bearer tokens (FLASHSALE_JWT_SECRET).")
    var jwtSecret: String?

    @Option(name: .customLong("instance-id"), help: "This instance's name in the lease table (FLASHSALE_INSTANCE_ID, default host name + pid).")
    var instanceID: String?

    @Option(name: .customLong("order-path"), help: "engine (default); direct or noop only for side-by-side benchmarks (FLASHSALE_ORDER_PATH).")
    var orderPath: String?

    @Option(name: .customLong("mongo-uri"), help: "MongoDB for orders, stock events and sales (MONGO_URI; unset keeps orders in the Redis outbox).")
    var mongoURI: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let level = Logger.Level(rawValue: environment["FLASHSALE_LOG_LEVEL"] ?? "info") ?? .info
        if environment["FLASHSALE_LOG_FORMAT"] != "text" {
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        }
        var logger = Logger(label: "flashsale")
        logger.logLevel = level

        let portValue = try port ?? environment["FLASHSALE_PORT"].map { text in
            guard let value = Int(text), (0...65_535).contains(value) else {
                throw ValidationError("FLASHSALE_PORT must be a port number, got \(text.debugDescription)")
            }
            return value
        } ?? 8080
        var redis = try RedisConfiguration(url: redisURL ?? environment["FLASHSALE_REDIS_URL"] ?? "redis://127.0.0.1:6379")
        try redis.applyTopology(from: environment)
        try redis.applyCredentials(from: environment)
        if let acks = environment["FLASHSALE_REDIS_REPLICA_ACKS"] {
            guard let value = Int(acks), (0...16).contains(value) else {
                throw ValidationError("FLASHSALE_REDIS_REPLICA_ACKS must be 0...16, got \(acks.debugDescription)")
            }
            redis.replicaAcks = value
        }
        if let timeout = environment["FLASHSALE_REDIS_REPLICA_ACK_TIMEOUT_MS"] {
            guard let value = Int(timeout), (1...60_000).contains(value) else {
                throw ValidationError("FLASHSALE_REDIS_REPLICA_ACK_TIMEOUT_MS must be 1...60000, got \(timeout.debugDescription)")
            }
            redis.replicaAckTimeoutMilliseconds = value
        }
        let claimRules = try ClaimRules(environment: environment)
        let secret = try BearerTokens.configuredSecret(jwtSecret ?? environment["FLASHSALE_JWT_SECRET"],
                                                       required: (environment["FLASHSALE_JWT_JWKS_FILE"] ?? "").isEmpty)
        var identityProvider: IdentityProviderKeys?
        if let file = environment["FLASHSALE_JWT_JWKS_FILE"], !file.isEmpty {
            guard claimRules.issuer != nil, claimRules.audience != nil else {
                throw ValidationError("FLASHSALE_JWT_JWKS_FILE needs FLASHSALE_JWT_ISSUER and FLASHSALE_JWT_AUDIENCE: a provider signs tokens for many services")
            }
            let reloadLogger = logger
            do {
                identityProvider = try await IdentityProviderKeys(path: file, rules: claimRules) { result in
                    switch result {
                    case .success(let count): reloadLogger.notice("identity provider keys reloaded", metadata: ["file": "\(file)", "keys": "\(count)"])
                    case .failure(let error): reloadLogger.error("identity provider keys not reloaded; the previous keys stay", metadata: ["file": "\(file)", "error": "\(error)"])
                    }
                }
            } catch {
                throw ValidationError("FLASHSALE_JWT_JWKS_FILE: \(error)")
            }
            logger.info("tokens from the identity provider", metadata: ["jwks": "\(file)", "keys": "\(identityProvider?.keyIDs.joined(separator: ",") ?? "")",
                                                                         "skipped": "\(identityProvider?.skippedKeys.joined(separator: ", ") ?? "")",
                                                                         "issuer": "\(claimRules.issuer ?? "")", "hs256": "\(secret != nil)"])
        }
        func rate(_ name: String, default value: Double) throws -> Double {
            guard let text = environment[name] else { return value }
            guard let rate = Double(text), rate >= 0, rate.isFinite else {
                throw ValidationError("\(name) must be a number of requests per second (0 = off), got \(text.debugDescription)")
            }
            return rate
        }
        let configuration = ServerConfiguration(
            host: host ?? environment["FLASHSALE_HOST"] ?? "127.0.0.1",
            port: portValue,
            redis: redis,
            jwtSecret: secret,
            instanceID: instanceID ?? environment["FLASHSALE_INSTANCE_ID"] ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())",
            rateLimitPerCustomer: try rate("FLASHSALE_RATE_LIMIT_CUSTOMER", default: 20),
            rateLimitPerAddress: try rate("FLASHSALE_RATE_LIMIT_ADDRESS", default: 2_000)
        )
        logger.info("starting", metadata: [
            "address": "\(configuration.host):\(configuration.port)",
            "redis": !redis.clusterNodes.isEmpty ? "cluster seeds \(redis.clusterNodes.map(\.description).joined(separator: ","))"
                : redis.sentinels.isEmpty ? "\(redis.host):\(redis.port)" : "sentinels \(redis.sentinels.map(\.description).joined(separator: ",")) master \(redis.masterName)",
            "replicaAcks": "\(redis.replicaAcks)",
            "instance": "\(configuration.instanceID)",
            "allocator": "jemalloc \(Self.jemallocVersion)",
        ])
        var serverConfiguration = configuration
        serverConfiguration.identityProvider = identityProvider
        serverConfiguration.claimRules = claimRules
        serverConfiguration.rateLimitUnverifiedPerAddress = try rate("FLASHSALE_RATE_LIMIT_UNVERIFIED", default: 20)
        if let text = environment["FLASHSALE_TRUSTED_PROXIES"] {
            do {
                serverConfiguration.trustedProxies = try TrustedProxies(parsing: text)
            } catch {
                throw ValidationError("FLASHSALE_TRUSTED_PROXIES: \(error)")
            }
        }
        if let name = environment["FLASHSALE_FORWARDED_HEADER"], !name.isEmpty {
            guard let header = TrustedProxies.Header.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else {
                throw ValidationError("FLASHSALE_FORWARDED_HEADER must be X-Forwarded-For or Forwarded, got \(name.debugDescription)")
            }
            serverConfiguration.trustedProxies.header = header
        }
        serverConfiguration.proxyProtocol = try Self.flag("FLASHSALE_PROXY_PROTOCOL", environment)
        if serverConfiguration.proxyProtocol && serverConfiguration.trustedProxies.isEmpty {
            throw ValidationError("FLASHSALE_PROXY_PROTOCOL needs FLASHSALE_TRUSTED_PROXIES: only the balancer may declare a client's address")
        }
        serverConfiguration.allowQueryToken = try Self.flag("FLASHSALE_ALLOW_QUERY_TOKEN", environment)
        if serverConfiguration.allowQueryToken {
            logger.warning("FLASHSALE_ALLOW_QUERY_TOKEN: the live socket takes ?access_token=, which proxies write to their access logs; offer the token as the subprotocol bearer.<token> instead")
        }
        let pathName = orderPath ?? environment["FLASHSALE_ORDER_PATH"] ?? "engine"
        guard let path = OrderPath(rawValue: pathName) else {
            throw ValidationError("--order-path must be engine, direct or noop, got \(pathName.debugDescription)")
        }
        serverConfiguration.orderPath = path
        if let delay = environment["FLASHSALE_COMMIT_DELAY_US"] {
            let longest = GroupCommitter.Configuration.maxCommitDelayMicroseconds
            guard let microseconds = Int(delay), (0...longest).contains(microseconds) else {
                throw ValidationError("FLASHSALE_COMMIT_DELAY_US must be 0...\(longest) (microseconds), got \(delay.debugDescription)")
            }
            serverConfiguration.engine.commitDelayMicroseconds = microseconds
        }
        if let delay = environment["FLASHSALE_FLEET_ORDER_DELAY_MS"] {
            guard let milliseconds = Int(delay), (0...5_000).contains(milliseconds) else {
                throw ValidationError("FLASHSALE_FLEET_ORDER_DELAY_MS must be 0...5000, got \(delay.debugDescription)")
            }
            serverConfiguration.engine.fleetOrderDelayMicroseconds = milliseconds * 1_000
        }
        serverConfiguration.trustRequestStart = try Self.flag("FLASHSALE_TRUST_REQUEST_START", environment)
        if serverConfiguration.trustRequestStart && serverConfiguration.trustedProxies.isEmpty {
            throw ValidationError("FLASHSALE_TRUST_REQUEST_START needs FLASHSALE_TRUSTED_PROXIES: X-Request-Start is read from those proxies only")
        }
        serverConfiguration.dataCipher = try DataKeys.cipher(environment: environment)
        serverConfiguration.mongoURI = (mongoURI ?? environment["MONGO_URI"]).flatMap { $0.isEmpty ? nil : $0 }
        if let idle = environment["FLASHSALE_IDLE_TIMEOUT_SECONDS"] {
            guard let seconds = Double(idle), seconds >= 1, seconds <= 3_600 else {
                throw ValidationError("FLASHSALE_IDLE_TIMEOUT_SECONDS must be 1...3600, got \(idle.debugDescription)")
            }
            serverConfiguration.idleTimeoutSeconds = seconds
        }
        if let limit = environment["FLASHSALE_MAX_HEADER_BYTES"] {
            guard let bytes = Int(limit), (4_096...1_048_576).contains(bytes) else {
                throw ValidationError("FLASHSALE_MAX_HEADER_BYTES must be 4096...1048576, got \(limit.debugDescription)")
            }
            serverConfiguration.maxHeaderBytes = bytes
        }
        switch (environment["FLASHSALE_TLS_CERT_FILE"].flatMap { $0.isEmpty ? nil : $0 }, environment["FLASHSALE_TLS_KEY_FILE"].flatMap { $0.isEmpty ? nil : $0 }) {
        case (nil, nil):
            break
        case (let certificate?, let key?):
            do {
                serverConfiguration.tls = try ServerConfiguration.serverTLS(certificateFile: certificate, keyFile: key)
                serverConfiguration.tlsCertificateNotAfter = try ServerConfiguration.certificateNotAfter(certificateFile: certificate)
            } catch {
                throw ValidationError("FLASHSALE_TLS_CERT_FILE / FLASHSALE_TLS_KEY_FILE: cannot load a PEM certificate chain and key (\(error))")
            }
            logger.info("HTTPS on the front", metadata: ["certificate": "\(certificate)"])
        default:
            throw ValidationError("set both FLASHSALE_TLS_CERT_FILE and FLASHSALE_TLS_KEY_FILE for HTTPS, or neither")
        }
        if let text = environment["FLASHSALE_MAX_CONNECTIONS"] {
            guard let count = Int(text), (1...1_000_000).contains(count) else {
                throw ValidationError("FLASHSALE_MAX_CONNECTIONS must be 1...1000000, got \(text.debugDescription)")
            }
            serverConfiguration.maxConnections = count
        }
        if let text = environment["FLASHSALE_LISTEN_BACKLOG"] {
            guard let count = Int(text), (16...65_535).contains(count) else {
                throw ValidationError("FLASHSALE_LISTEN_BACKLOG must be 16...65535, got \(text.debugDescription)")
            }
            serverConfiguration.listenBacklog = count
        }
        if let text = environment["FLASHSALE_HEAD_TIMEOUT_SECONDS"] {
            guard let seconds = Double(text), seconds >= 1, seconds <= 300 else {
                throw ValidationError("FLASHSALE_HEAD_TIMEOUT_SECONDS must be 1...300, got \(text.debugDescription)")
            }
            serverConfiguration.headTimeoutSeconds = seconds
        }
        if let origins = environment["FLASHSALE_CORS_ORIGINS"] {
            guard let parsed = CrossOriginMiddleware.origins(parsing: origins) else {
                throw ValidationError("FLASHSALE_CORS_ORIGINS must be * or comma-separated origins like https://shop.example (scheme://host[:port]), got \(origins.debugDescription)")
            }
            serverConfiguration.corsOrigins = parsed
        }
        if let directory = environment["FLASHSALE_PAGES_DIR"], !directory.isEmpty {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("FLASHSALE_PAGES_DIR must name a directory, got \(directory.debugDescription)")
            }
            serverConfiguration.pagesDirectory = directory
        }
        if let preference = environment["FLASHSALE_MONGO_READ_PREFERENCE"], !preference.isEmpty {
            guard SaleArchive.readPreferences.contains(preference) else {
                throw ValidationError("FLASHSALE_MONGO_READ_PREFERENCE must be one of \(SaleArchive.readPreferences.sorted().joined(separator: ", ")), got \(preference.debugDescription)")
            }
            serverConfiguration.mongoReadPreference = preference
        }
        if let text = environment["FLASHSALE_READ_CACHE_SECONDS"], !text.isEmpty {
            guard let seconds = Int(text), (0...86_400).contains(seconds) else {
                throw ValidationError("FLASHSALE_READ_CACHE_SECONDS must be 0...86400 (0 = no cache), got \(text.debugDescription)")
            }
            serverConfiguration.archive.saleCacheSeconds = seconds
            serverConfiguration.archive.orderCacheSeconds = min(seconds, serverConfiguration.archive.orderCacheSeconds)
        }
        if let text = environment["FLASHSALE_METRICS_PORT"], !text.isEmpty {
            guard let metricsPort = Int(text), (1...65_535).contains(metricsPort), metricsPort != serverConfiguration.port else {
                throw ValidationError("FLASHSALE_METRICS_PORT must be a port number other than FLASHSALE_PORT, got \(text.debugDescription)")
            }
            serverConfiguration.metricsPort = metricsPort
        }
        if let retention = environment["FLASHSALE_RETENTION_SECONDS"] {
            guard let seconds = Int(retention), (60...31_536_000).contains(seconds) else {
                throw ValidationError("FLASHSALE_RETENTION_SECONDS must be 60...31536000 (a year), got \(retention.debugDescription)")
            }
            serverConfiguration.outbox.retentionSeconds = seconds
        }
        logger.info("connection cap", metadata: [
            "maxConnections": "\(serverConfiguration.maxConnections)",
            "from": "\(environment["FLASHSALE_MAX_CONNECTIONS"] == nil ? "the open-file and memory limits" : "FLASHSALE_MAX_CONNECTIONS")",
            "memoryLimitBytes": "\(ContainerMemory.limitBytes().map(String.init) ?? "none")",
        ])
        var shutdownDelay = 5.0
        if let text = environment["FLASHSALE_SHUTDOWN_DELAY_SECONDS"], !text.isEmpty {
            guard let seconds = Double(text), (0...300).contains(seconds) else {
                throw ValidationError("FLASHSALE_SHUTDOWN_DELAY_SECONDS must be 0...300, got \(text.debugDescription)")
            }
            shutdownDelay = seconds
        }
        let components = FlashSaleApplication.Components(configuration: serverConfiguration, logger: logger)
        // Graceful shutdown goes in reverse order: the delay first (unready, still serving), then the application.
        let group = ServiceGroup(configuration: .init(
            services: [components.application, ShutdownDelay(drain: components.drain, seconds: shutdownDelay, logger: logger)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("stopped")
        // The service group has finished (leases returned, queues drained); do not let a thread that
        // missed its shutdown keep the process alive.
        Foundation.exit(0)
    }

    /// A boolean setting: true/false (or 1/0); false when unset.
    static func flag(_ name: String, _ environment: [String: String]) throws -> Bool {
        guard let text = environment[name], !text.isEmpty else { return false }
        guard let value = ["1": true, "true": true, "0": false, "false": false][text.lowercased()] else {
            throw ValidationError("\(name) must be true or false, got \(text.debugDescription)")
        }
        return value
    }

    /// The version string of the linked jemalloc (proves it replaced the system allocator).
    static var jemallocVersion: String {
        var version: UnsafePointer<CChar>?
        var size = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &size, nil, 0) == 0, let version else { return "unavailable" }
        return String(cString: version)
    }
}

extension ClaimRules {
    /// `FLASHSALE_JWT_ISSUER`, `FLASHSALE_JWT_AUDIENCE`, `FLASHSALE_JWT_ADMIN_ISSUER`, `FLASHSALE_JWT_ADMIN_AUDIENCE`.
    init(environment: [String: String]) throws {
        func value(_ name: String) throws -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard text.utf8.count <= 512 else { throw ValidationError("\(name) is longer than 512 bytes") }
            return text
        }
        self.init(issuer: try value("FLASHSALE_JWT_ISSUER"), audience: try value("FLASHSALE_JWT_AUDIENCE"),
                  adminIssuer: try value("FLASHSALE_JWT_ADMIN_ISSUER"), adminAudience: try value("FLASHSALE_JWT_ADMIN_AUDIENCE"))
    }
}

extension BearerTokens {
    /// The HS256 secret, at least ``minimumSecretBytes``; nil when not set and not `required`.
    static func configuredSecret(_ secret: String?, required: Bool) throws -> String? {
        guard let secret, !secret.isEmpty else {
            if required { throw ValidationError("FLASHSALE_JWT_SECRET (or --jwt-secret) must be set (at least \(minimumSecretBytes) bytes), or FLASHSALE_JWT_JWKS_FILE") }
            return nil
        }
        guard secret.utf8.count >= minimumSecretBytes else {
            throw ValidationError("FLASHSALE_JWT_SECRET must be at least \(minimumSecretBytes) bytes (HMAC-SHA256 wants a 256-bit key); generate one with: head -c 32 /dev/urandom | base64")
        }
        return secret
    }
}

extension RedisConfiguration {
    /// Where the ledger is beyond the URL: the Sentinels that name its primary (`FLASHSALE_REDIS_SENTINELS`,
    /// `FLASHSALE_REDIS_MASTER_NAME`), or the seed nodes of a Redis Cluster (`FLASHSALE_REDIS_CLUSTER_NODES`);
    /// not both.
    mutating func applyTopology(from environment: [String: String]) throws {
        if let list = environment["FLASHSALE_REDIS_SENTINELS"], !list.isEmpty {
            sentinels = try RedisConfiguration.endpoints(list)
            masterName = environment["FLASHSALE_REDIS_MASTER_NAME"] ?? "flashsale"
        }
        if let nodes = environment["FLASHSALE_REDIS_CLUSTER_NODES"], !nodes.isEmpty {
            guard sentinels.isEmpty else {
                throw ValidationError("FLASHSALE_REDIS_CLUSTER_NODES and FLASHSALE_REDIS_SENTINELS are alternatives: set one")
            }
            clusterNodes = try RedisConfiguration.endpoints(nodes, naming: "cluster node")
        }
    }

    /// Credentials from the environment (a Secret) over the URL's: the image has no shell to build a URL.
    /// `FLASHSALE_REDIS_USERNAME`/`_PASSWORD` log in to the members (an ACL user), `FLASHSALE_REDIS_SENTINEL_USERNAME`/
    /// `_PASSWORD` to the Sentinels.
    mutating func applyCredentials(from environment: [String: String]) throws {
        if let value = environment["FLASHSALE_REDIS_USERNAME"], !value.isEmpty { username = value }
        if let value = environment["FLASHSALE_REDIS_PASSWORD"], !value.isEmpty { password = value }
        if let value = environment["FLASHSALE_REDIS_SENTINEL_USERNAME"], !value.isEmpty { sentinelUsername = value }
        if let value = environment["FLASHSALE_REDIS_SENTINEL_PASSWORD"], !value.isEmpty { sentinelPassword = value }
        if username != nil && password == nil {
            throw ValidationError("FLASHSALE_REDIS_USERNAME needs FLASHSALE_REDIS_PASSWORD (or a password in FLASHSALE_REDIS_URL)")
        }
    }
}
