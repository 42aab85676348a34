import NIOCore
import NIOSSL
import Replication

/// How `POST /sales/{id}/orders` is served. Only `engine` is the product; the others exist so the load
/// generator can measure the same server side by side.
public enum OrderPath: String, Sendable, CaseIterable {
    /// Leased shards, local buckets, group commit (the design).
    case engine
    /// The textbook flash-sale design: one Lua call per order straight against the pool, from a pool of
    /// connections; no shards, no group commit.
    case direct
    /// Parse, authenticate, validate and answer 201 without touching the ledger: this machine's HTTP ceiling.
    case noop
}

/// Configuration of `flashsale serve`; see the README table for the environment variables.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var redis: RedisConfiguration
    /// HS256 secret (`FLASHSALE_JWT_SECRET`, at least 32 bytes): local use, `flashsale token`, the load generator.
    /// Nil: only the identity provider's tokens are accepted.
    public var jwtSecret: String?
    /// The identity provider's keys (`FLASHSALE_JWT_JWKS_FILE`): ES256, RS256 and EdDSA tokens.
    public var identityProvider: IdentityProviderKeys?
    /// Issuer and audiences tokens must carry (`FLASHSALE_JWT_ISSUER`, `_AUDIENCE`, `_ADMIN_ISSUER`, `_ADMIN_AUDIENCE`).
    public var claimRules = ClaimRules()
    /// Proxies whose `X-Forwarded-For`/`Forwarded` and `X-Request-Start` are believed (`FLASHSALE_TRUSTED_PROXIES`).
    public var trustedProxies = TrustedProxies.none
    /// Every connection starts with a PROXY protocol v2 header from a trusted proxy (`FLASHSALE_PROXY_PROTOCOL`).
    public var proxyProtocol = false
    /// The live socket also takes `?access_token=` (`FLASHSALE_ALLOW_QUERY_TOKEN`): for old clients only.
    public var allowQueryToken = false
    /// Requests per second per client address whose token is missing or fails verification (burst twice that;
    /// `FLASHSALE_RATE_LIMIT_UNVERIFIED`); 0 turns the limit off.
    public var rateLimitUnverifiedPerAddress: Double = 20
    public var instanceID: String
    /// Requests per second per customer (burst twice that); 0 turns the limit off.
    public var rateLimitPerCustomer: Double
    /// Requests per second per client address (burst twice that); 0 turns the limit off.
    public var rateLimitPerAddress: Double
    public var engine: EngineConfiguration
    public var orderPath: OrderPath = .engine
    /// Take a customer's arrival from the `X-Request-Start` header the front (ingress, haproxy) sets
    /// (`FLASHSALE_TRUST_REQUEST_START`): every customer passes that one door, so with several instances the
    /// fleet serves them in the order the front read them (see `RequestStart`). Only behind a front that
    /// overwrites the header on every request: a client could otherwise claim an earlier arrival.
    public var trustRequestStart = false
    /// Seals delivery details. Nil: a key is generated for this process only (details sealed by it cannot be
    /// read after a restart); `flashsale serve` always passes the configured key.
    public var dataCipher: FieldCipher?
    /// MongoDB for orders, stock events and sales (`MONGO_URI`); nil keeps orders in the Redis outbox.
    public var mongoURI: String?
    /// Where reads of settled sales go (`FLASHSALE_MONGO_READ_PREFERENCE`): secondaries by default, so reads
    /// scale apart from the outbox's `w:majority` writes on the primary.
    public var mongoReadPreference = "secondaryPreferred"
    /// Reads of settled sales: the Redis cache's lifetimes, the negative cache, the bound on MongoDB reads in flight.
    public var archive = SaleArchive.Configuration()
    /// Outbox drainer settings (the consumer name is the instance id).
    public var outbox: OutboxDrainer.Configuration
    /// A connection with no request and no response in flight for this long is closed (`FLASHSALE_IDLE_TIMEOUT_SECONDS`).
    public var idleTimeoutSeconds: Double = 60
    /// Largest request head accepted, all header lines together (`FLASHSALE_MAX_HEADER_BYTES`); one field at
    /// most this too, and at most 100 header fields.
    public var maxHeaderBytes = 16_384
    /// Open connections per instance at most (`FLASHSALE_MAX_CONNECTIONS`); see `ConnectionLimits`.
    public var maxConnections = ConnectionLimits.defaultMaxConnections
    /// Connections the kernel queues before they are accepted (`FLASHSALE_LISTEN_BACKLOG`; Linux caps it at
    /// `net.core.somaxconn`). A flash crowd opens thousands at once; 256 would make most of them retry a SYN.
    public var listenBacklog = 4_096
    /// How long a request head may take from its first byte (`FLASHSALE_HEAD_TIMEOUT_SECONDS`).
    public var headTimeoutSeconds: Double = 10
    /// HTTPS on the front (`FLASHSALE_TLS_CERT_FILE` + `FLASHSALE_TLS_KEY_FILE`); nil: plain HTTP.
    public var tls: TLSConfiguration?
    /// Origins allowed to call the API from a browser (`FLASHSALE_CORS_ORIGINS`, comma-separated, `*` for
    /// any): the pages served from a CDN or the shop's own domain. Empty: same origin only (no CORS headers).
    public var corsOrigins: [String] = []
    /// A directory whose files replace the built-in pages (`FLASHSALE_PAGES_DIR`): read on every request,
    /// for a shop that restyles the pages, or while working on them. Nil: the pages built into the binary.
    public var pagesDirectory: String?
    /// A port of its own for `GET /metrics` (`FLASHSALE_METRICS_PORT`), on the same host: a NetworkPolicy can then
    /// admit only the monitoring namespace to it. `nil` serves `/metrics` on the main port.
    public var metricsPort: Int?
    /// The front certificate's expiry (seconds since 1970) when TLS is on, exported as a gauge.
    public var tlsCertificateNotAfter: Int?

    public init(
        host: String = "127.0.0.1", port: Int = 8080, redis: RedisConfiguration = RedisConfiguration(), jwtSecret: String?,
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
        self.outbox = OutboxDrainer.Configuration(consumer: instanceID)
    }
}

extension ServerConfiguration {
    /// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only (the Mozilla "intermediate" list); TLS 1.3's are
    /// all AEAD with forward secrecy already. No static-RSA key exchange, no CBC, no SHA-1 MACs.
    public static let tls12CipherSuites: [NIOTLSCipher] = [
        .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]

    /// The front's TLS from PEM files: the certificate chain (leaf first) and its private key; TLS 1.2 at least,
    /// with ``tls12CipherSuites`` only.
    public static func serverTLS(certificateFile: String, keyFile: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { NIOSSLCertificateSource.certificate($0) }
        guard !chain.isEmpty else { throw NIOSSLError.failedToLoadCertificate }
        let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        tls.cipherSuiteValues = tls12CipherSuites
        // At a graceful stop, idle keep-alive connections (a proxy's pool) are closed; waiting the default
        // 5 s for each peer's close_notify would only delay the drain.
        tls.shutdownTimeout = .seconds(1)
        return tls
    }

    /// When the leaf certificate of a PEM chain stops being valid, in seconds since 1970 (for
    /// `flashsale_tls_certificate_expiry_timestamp_seconds` and its alert).
    public static func certificateNotAfter(certificateFile: String) throws -> Int {
        guard let leaf = try NIOSSLCertificate.fromPEMFile(certificateFile).first else { throw NIOSSLError.failedToLoadCertificate }
        return Int(leaf.notValidAfter)
    }
}
