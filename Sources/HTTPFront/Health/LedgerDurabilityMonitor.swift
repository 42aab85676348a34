import Logging
import Replication
import ServiceLifecycle
import Synchronization

/// Checks at start, and then every minute, that the ledger's Redis is durable (`appendonly yes`,
/// `appendfsync always`). It never stops the service (managed Redis may refuse `CONFIG GET`: that is
/// "unknown"), but says so: a warning in the log on every change, a `/readyz` detail and the
/// `flashsale_ledger_durable` gauge (1 durable, 0 not, -1 unknown).
public final class LedgerDurabilityMonitor: Service, Sendable {
    private let redis: RedisClient
    private let logger: Logger
    private let intervalMilliseconds: Int
    private let current = Mutex<LedgerDurability>(.unknown("not checked yet"))

    public init(redis: RedisClient, logger: Logger, intervalMilliseconds: Int = 60_000) {
        precondition(intervalMilliseconds >= 100)
        self.redis = redis
        self.logger = logger
        self.intervalMilliseconds = intervalMilliseconds
    }

    public var durability: LedgerDurability { current.withLock { $0 } }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await check()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(self.intervalMilliseconds)) }
        }
    }

    /// One check; logs when the answer changed.
    func check() async {
        let found: LedgerDurability
        do {
            found = try await redis.withConnection { connection throws(RedisError) in Ledger(connection: connection).durability() }
        } catch {
            found = .unknown("\(error.code): \(error.message)")
        }
        let previous = current.withLock { state in
            defer { state = found }
            return state
        }
        guard previous != found else { return }
        switch found {
        case .durable:
            logger.info("the ledger's Redis is durable", metadata: ["durability": "\(found)"])
        case .notDurable:
            logger.warning("the ledger's Redis can lose confirmed orders in a crash: set appendonly yes and appendfsync always",
                           metadata: ["durability": "\(found)"])
        case .unknown:
            logger.warning("cannot tell whether the ledger's Redis is durable; make sure appendonly is yes and appendfsync always",
                           metadata: ["durability": "\(found)"])
        }
    }
}
