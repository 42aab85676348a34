import Logging
import ServiceLifecycle
import Synchronization

/// Whether this instance is on its way out: told to stop (SIGTERM), it first reports unready (`/readyz` 503
/// `draining`) and closes keep-alive connections after their next answer, while it still serves everything.
public final class DrainState: Sendable {
    private let draining = Atomic(false)

    public init() {}

    public var isDraining: Bool { draining.load(ordering: .relaxed) }

    func begin() { draining.store(true, ordering: .relaxed) }
}

/// The notice a load balancer needs before an instance stops taking connections
/// (`FLASHSALE_SHUTDOWN_DELAY_SECONDS`, 5 by default): on SIGTERM the instance turns unready at once and keeps
/// serving for this long (haproxy and cloud balancers see `/readyz` fail within their check interval times their
/// fall count; Kubernetes removes a terminating pod from its endpoints, which kube-proxy and the ingress apply within
/// a few seconds), then the server stops accepting and drains as before (commits flushed, leases returned).
///
/// It runs after the application in the service group, so that graceful shutdown, which goes in reverse order,
/// reaches it first and the application only once the delay has passed.
public struct ShutdownDelay: Service {
    let drain: DrainState
    let seconds: Double
    let logger: Logger

    public init(drain: DrainState, seconds: Double, logger: Logger) {
        precondition(seconds >= 0 && seconds <= 300, "a shutdown delay of 0 to 300 s")
        self.drain = drain
        self.seconds = seconds
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: the group is going down without a graceful phase
        }
        drain.begin()
        logger.notice("stopping: unready now, still serving while the load balancers notice", metadata: ["seconds": "\(seconds)"])
        try? await Task.sleep(for: .milliseconds(Int64(seconds * 1_000)))
        logger.notice("stopping: no new connections; draining the ones open")
    }
}
