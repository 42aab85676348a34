import Foundation
import ReservationEngine

/// The numbers of a sale, final once it closed. Computed from one atomic snapshot of the ledger and
/// stored once at close (`fs:{S}:summary`), so a final summary never changes afterwards.
public struct SaleSummary: Sendable, Hashable, Codable {
    public var saleID: String
    public var final: Bool
    public var status: SaleStatus
    public var stock: Int
    public var sold: Int
    public var orders: Int
    public var buyers: Int
    public var openedAtMilliseconds: Int64?
    public var soldOutAtMilliseconds: Int64?
    public var closedAtMilliseconds: Int64?
    public var closedReason: ClosedReason?
    public var cancelled: Int
    public var rejections: [String: Int]
    public var waitlistJoined: Int
    public var waitlistServed: Int
    public var waitlistUnserved: Int

    public var sellOutMilliseconds: Int64? {
        guard let opened = openedAtMilliseconds, let soldOut = soldOutAtMilliseconds else { return nil }
        return soldOut - opened
    }

    public init(snapshot: LedgerSnapshot) {
        let statistics = snapshot.statistics
        saleID = snapshot.definition.id
        final = snapshot.status == .closed
        status = snapshot.status
        stock = snapshot.definition.stock
        sold = snapshot.sold
        orders = Int(statistics["orders"] ?? 0)
        buyers = snapshot.buyers
        openedAtMilliseconds = snapshot.timestamps["openedAtMs"]
        soldOutAtMilliseconds = snapshot.timestamps["soldOutAtMs"]
        closedAtMilliseconds = snapshot.timestamps["closedAtMs"]
        closedReason = snapshot.closedReason
        cancelled = Int(statistics["cancelled"] ?? 0)
        var rejections: [String: Int] = [:]
        for (key, value) in statistics where key.hasPrefix("rejections:") {
            rejections[String(key.dropFirst("rejections:".count))] = Int(value)
        }
        self.rejections = rejections
        waitlistJoined = Int(statistics["waitlistJoined"] ?? 0)
        waitlistServed = Int(statistics["waitlistServed"] ?? 0)
        waitlistUnserved = Int(statistics["waitlistUnserved"] ?? 0)
    }
}

extension Ledger {
    /// The stored final summary if there is one; otherwise the live numbers, stored when the sale is closed.
    public func summary(saleID: String) throws(RedisError) -> SaleSummary? {
        let keys = LedgerKeys(saleID: saleID)
        if case .bulk(let json) = try connection.send(RedisCommand("GET", keys.summary)).throwingServerError(),
           let stored = try? JSONDecoder().decode(SaleSummary.self, from: Data(json)) {
            return stored
        }
        guard let snapshot = try snapshot(saleID: saleID) else { return nil }
        let summary = SaleSummary(snapshot: snapshot)
        if summary.final, let json = try? JSONEncoder().encode(summary) {
            var store = RedisCommand("SET", keys.summary)
            store.append(bytes: Array(json))
            store.append("NX")
            _ = try connection.send(store).throwingServerError()
            _ = try connection.send(RedisCommand("SREM", LedgerKeys.activeSales, saleID)).throwingServerError()
            // Another instance may have stored it first: serve the stored one.
            if case .bulk(let stored) = try connection.send(RedisCommand("GET", keys.summary)).throwingServerError(),
               let first = try? JSONDecoder().decode(SaleSummary.self, from: Data(stored)) {
                return first
            }
        }
        return summary
    }

    /// Adds rejection counts (code -> count) to the sale's statistics.
    public func addRejections(saleID: String, _ counts: [String: Int]) throws(RedisError) {
        guard !counts.isEmpty else { return }
        let stats = LedgerKeys(saleID: saleID).stats
        let commands = counts.sorted { $0.key < $1.key }.map { code, count in
            var command = RedisCommand("HINCRBY", stats, "rejections:\(code)")
            command.append(count)
            return command
        }
        for reply in try connection.pipeline(commands) { try reply.throwingServerError() }
    }

    /// Sale ids whose lifecycle is not settled yet.
    public func activeSaleIDs() throws(RedisError) -> [String] {
        let reply = try connection.send(RedisCommand("SMEMBERS", LedgerKeys.activeSales)).throwingServerError()
        return (reply.array ?? []).compactMap(\.string).filter(SaleDefinition.isValidID).sorted()
    }
}
