import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import Replication

/// Builds the FlashSale HTTP application and the services it runs: the control Redis client, the
/// reservation engine's reconciler (lease renewal, lifecycle, summaries) and the live stock hub.
/// `runService()` on the result handles SIGTERM/SIGINT: the server stops taking requests first, then the
/// hub closes sockets, the reconciler returns the leases after the queued commits, the client closes.
public enum FlashSaleApplication {
    public static func build(configuration: ServerConfiguration, logger: Logger) -> some ApplicationProtocol {
        let components = Components(configuration: configuration, logger: logger)
        return components.application
    }

    /// The application and its parts (tests reach the engine and hub through it).
    public struct Components {
        public let engine: ReservationService
        /// Set on SIGTERM by ``ShutdownDelay``: unready, keep-alive connections closed after their next answer.
        public let drain: DrainState
        public let hub: LiveStockHub
        /// The outbox drainer when MongoDB is configured.
        public let drainer: OutboxDrainer?
        public let application: Application<RouterResponder<FlashSaleRequestContext>>

        public init(configuration: ServerConfiguration, logger: Logger) {
            let redis = RedisClient(configuration: configuration.redis, name: "redis-control")
            let metrics = FlashSaleMetrics()
            if let notAfter = configuration.tlsCertificateNotAfter { metrics.tlsCertificate(notAfter: notAfter) }
            var engineConfiguration = configuration.engine
            // Trusted front stamps are moved onto this instance's clock (`FrontClock`), so the ledger still corrects
            // this instance's own skew.
            engineConfiguration.arrivalsOnOwnClock = true
            let engine = ReservationService(redis: configuration.redis, configuration: engineConfiguration, logger: logger, commitObserver: metrics)
            let hub = LiveStockHub(engine: engine, logger: logger)
            let router = Router(context: FlashSaleRequestContext.self)
            if !configuration.corsOrigins.isEmpty {
                router.middlewares.add(CrossOriginMiddleware(origins: configuration.corsOrigins))
            }
            let drain = DrainState()
            router.middlewares.add(FrontMiddleware(metrics: metrics, strictTransport: configuration.tls != nil, drain: drain))
            let cipher = configuration.dataCipher ?? {
                logger.warning("no data key configured: delivery details are sealed with a key that lives only as long as this process")
                return FieldCipher(sealing: FieldCipher.Key.generate(id: "ephemeral").key)
            }()
            var drainer: OutboxDrainer?
            var archive: SaleArchive?
            var drainerRedis: RedisClient?
            var mongoFailure: String?
            if let uri = configuration.mongoURI {
                do {
                    let mongo = try MongoClient(uri: uri, appName: "flashsale-\(configuration.instanceID)")
                    let outboxRedis = RedisClient(configuration: configuration.redis, name: "redis-outbox")
                    drainerRedis = outboxRedis
                    drainer = OutboxDrainer(redis: outboxRedis, mongo: mongo, configuration: configuration.outbox, logger: logger)
                    // Reads of settled sales: a client of their own, with the read preference (secondaries).
                    let readURI = SaleArchive.readURI(uri, readPreference: configuration.mongoReadPreference)
                    archive = SaleArchive(mongo: try MongoClient(uri: readURI, appName: "flashsale-\(configuration.instanceID)-reads"),
                                          cache: redis, configuration: configuration.archive, observer: metrics)
                    logger.info("orders go to MongoDB through the outbox", metadata: ["mongo": "\(mongo.redactedURI)", "database": "\(mongo.databaseName)"])
                } catch {
                    mongoFailure = "\(error)"
                    logger.error("MONGO_URI is not usable; orders stay in the Redis outbox", metadata: ["error": "\(error)"])
                }
            } else {
                logger.notice("MongoDB is not configured (MONGO_URI): confirmed orders stay in the Redis outbox streams")
            }
            let durability = LedgerDurabilityMonitor(redis: redis, logger: logger)
            var health = HealthRoutes(redis: redis, drainer: drainer, mongoFailure: mongoFailure, durability: durability)
            health.drain = drain
            health.register(on: router)
            let exposition: @Sendable () -> Response = { [drainer] in
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
                let text = metrics.exposition(engine: engine, hub: hub, drainer: drainer, durability: durability.durability)
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: text)))
            }
            var metricsApplication: Application<RouterResponder<BasicRequestContext>>?
            if let metricsPort = configuration.metricsPort {
                let metricsRouter = Router(context: BasicRequestContext.self)
                metricsRouter.get("metrics") { _, _ in exposition() }
                // The probes here too: with FLASHSALE_PROXY_PROTOCOL the HTTP port takes only the balancer's
                // connections, and the kubelet's probes carry no PROXY header.
                health.register(on: metricsRouter)
                metricsApplication = Application(
                    router: metricsRouter,
                    configuration: .init(address: .hostname(configuration.host, port: metricsPort), serverName: "flashsale-metrics"),
                    logger: logger)
            } else {
                router.get("metrics") { _, _ in exposition() }
            }
            StaticRoutes(pagesDirectory: configuration.pagesDirectory).register(on: router)
            var api = APIRoutes(
                engine: engine,
                tokens: TokenVerifier(secret: configuration.jwtSecret.map { BearerTokens(secret: $0, rules: configuration.claimRules) },
                                      identityProvider: configuration.identityProvider),
                customerLimiter: RateLimiter(ratePerSecond: configuration.rateLimitPerCustomer),
                addressLimiter: RateLimiter(ratePerSecond: configuration.rateLimitPerAddress),
                unverifiedLimiter: RateLimiter(ratePerSecond: configuration.rateLimitUnverifiedPerAddress),
                metrics: metrics,
                cipher: cipher
            )
            api.orderPath = configuration.orderPath
            api.archive = archive
            api.trustRequestStart = configuration.trustRequestStart
            api.trustedProxies = configuration.trustedProxies
            api.allowQueryToken = configuration.allowQueryToken
            if configuration.orderPath == .direct {
                api.directClients = (0..<8).map { RedisClient(configuration: configuration.redis, name: "redis-direct-\($0)") }
            }
            api.register(on: router)
            api.registerLive(on: router, hub: hub)

            let channelConfiguration = HTTP1WebSocketUpgradeChannel.Configuration(http1: .init(
                idleTimeout: .milliseconds(Int64(configuration.idleTimeoutSeconds * 1_000)),
                httpDecoderConfiguration: .init(maxHeaderFieldSize: configuration.maxHeaderBytes, maxHeaderListSize: configuration.maxHeaderBytes,
                                                maxHeaderFieldCount: 100)
            ))
            let limits = ConnectionLimits(maxConnections: configuration.maxConnections, headTimeoutSeconds: configuration.headTimeoutSeconds,
                                          idleTimeoutSeconds: configuration.idleTimeoutSeconds, maxHeaderBytes: configuration.maxHeaderBytes)
            let connections = ConnectionCounter()
            let webSocketResponder = router.buildResponder()
            var application = Application(
                router: router,
                server: HTTPServerBuilder { [tls = configuration.tls, proxyProtocol = configuration.proxyProtocol,
                                            trusted = configuration.trustedProxies] responder in
                    let guarded = GuardedChildChannel(
                        base: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder, configuration: channelConfiguration),
                        limits: limits, counter: connections)
                    switch (tls, proxyProtocol) {
                    case (nil, false): return guarded
                    case (nil, true): return ProxyProtocolChildChannel(base: guarded, trusted: trusted)
                    case (let tls?, false): return try TLSChannel(guarded, tlsConfiguration: tls)
                    case (let tls?, true): return ProxyProtocolChildChannel(base: try TLSChannel(guarded, tlsConfiguration: tls), trusted: trusted)
                    }
                },
                configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "flashsale",
                                     backlog: configuration.listenBacklog),
                logger: logger
            )
            application.addServices(redis, durability, LeaseReconciler(service: engine), hub)
            if let metricsApplication { application.addServices(metricsApplication) }
            for client in api.directClients { application.addServices(client) }
            // Services stop in reverse order: the drainer finishes before its Redis client closes.
            if let drainer, let drainerRedis { application.addServices(drainerRedis, drainer) }
            if configuration.orderPath != .engine {
                logger.warning("comparison order path: orders do not go through the engine", metadata: ["orderPath": "\(configuration.orderPath.rawValue)"])
            }
            self.engine = engine
            self.drain = drain
            self.hub = hub
            self.drainer = drainer
            self.application = application
        }
    }
}
