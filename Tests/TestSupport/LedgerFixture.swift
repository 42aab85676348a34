import Foundation
import Logging
import ReservationEngine
import Replication

/// Helpers for tests that run sales against a real ``RedisServer``.
public enum LedgerFixture {
    public static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1_000) }

    /// Creates a sale that is open now (started a second ago) and ends after `durationSeconds`.
    @discardableResult
    public static func createOpenSale(on server: RedisServer, id: String = "sale-\(UUID().uuidString.prefix(8))", stock: Int, limit: Int = 2, durationSeconds: Int64 = 3_600) throws -> SaleDefinition {
        let now = nowMilliseconds
        let definition = SaleDefinition(id: id, name: "Test sale", stock: stock, startsAtMilliseconds: now - 1_000,
                                        endsAtMilliseconds: now + durationSeconds * 1_000, perCustomerLimit: limit)
        try definition.validate()
        let created = try Ledger(connection: server.connect()).createSale(definition)
        precondition(created, "sale \(id) already existed")
        return definition
    }

    /// An atomic read of the sale; fails the caller when the sale is missing.
    public static func snapshot(on server: RedisServer, saleID: String) throws -> LedgerSnapshot {
        guard let snapshot = try Ledger(connection: server.connect()).snapshot(saleID: saleID) else {
            throw RedisServerError("sale \(saleID) not found")
        }
        return snapshot
    }

    public static func orders(on server: RedisServer, saleID: String) throws -> [OrderRecord] {
        try Ledger(connection: server.connect()).orders(saleID: saleID)
    }

    public static func purchases(on server: RedisServer, saleID: String) throws -> [String: Int] {
        try Ledger(connection: server.connect()).purchases(saleID: saleID)
    }

    /// An engine for one simulated instance.
    /// `leaseToDemand` is off by default here: most ledger tests reason about leases of the adaptive share.
    public static func engine(on server: RedisServer, instanceID: String, leaseTTLMilliseconds: Int = 1_000, maxShardUnits: Int = 64, spreadFactor: Int = 4,
                              redis: RedisConfiguration? = nil, leaseToDemand: Bool = false) -> ReservationService {
        var logger = Logger(label: "test.\(instanceID)")
        logger.logLevel = .error
        var configuration = EngineConfiguration(
            instanceID: instanceID,
            leaseTTLMilliseconds: leaseTTLMilliseconds,
            leaseRenewMarginMilliseconds: leaseTTLMilliseconds / 2,
            leaseSafetyMarginMilliseconds: leaseTTLMilliseconds / 8,
            shardSizing: ShardSizing(spreadFactor: spreadFactor, maxShardUnits: maxShardUnits),
            reconcileIntervalMilliseconds: 50
        )
        configuration.leaseToDemand = leaseToDemand
        return ReservationService(redis: redis ?? server.configuration, configuration: configuration, logger: logger)
    }
}

/// A counter tasks can share in tests.
public final class SharedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    public init() {}
    public func increment() { lock.withLock { count += 1 } }
    public var value: Int { lock.withLock { count } }
}
