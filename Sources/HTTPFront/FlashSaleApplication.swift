import Hummingbird
import Logging
import Replication

/// Builds the FlashSale HTTP application and the services it runs (Redis client, later the
/// committers, reconciler and scheduler). `runService()` on the result handles SIGTERM/SIGINT:
/// intake stops, services shut down in reverse order.
public enum FlashSaleApplication {
    public static func build(configuration: ServerConfiguration, logger: Logger) -> some ApplicationProtocol {
        let redis = RedisClient(configuration: configuration.redis, name: "redis-control")
        let router = Router()
        HealthRoutes(redis: redis, readinessChecks: []).register(on: router)

        var application = Application(
            router: router,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "flashsale"
            ),
            logger: logger
        )
        application.addServices(redis)
        return application
    }
}
