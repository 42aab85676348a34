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

/// A waiting customer who got units freed later.
public struct ServedWaiter: Sendable, Hashable {
    public let customerID: String
    public let orderID: String
    public let quantity: Int
}

extension Ledger {
    /// The stored final summary if there is one; otherwise the live numbers, stored when the sale is closed
    /// (one script: a sale whose keys are gone gets nothing created, a retired one's summary keeps the TTL).
    public func summary(saleID: String) throws(RedisError) -> SaleSummary? {
        let reply = try connection.evaluate(LedgerScripts.storeSummary, keys: LedgerKeys(saleID: saleID).retained)
        if let message = reply.errorMessage { throw RedisError(.serverError, "store_summary: \(message)") }
        guard let elements = reply.array, let tag = elements.first?.string else {
            throw RedisError(.unexpectedReply, "store_summary answered \(reply)")
        }
        if tag == "NOT_FOUND" { return nil }
        guard elements.count == 2, case .bulk(let json) = elements[1],
              let summary = try? JSONDecoder().decode(SaleSummary.self, from: Data(json)) else {
            throw RedisError(.unexpectedReply, "store_summary answered \(reply)")
        }
        if tag == "STORED" {
            _ = try connection.send(RedisCommand("SREM", LedgerKeys.activeSales, saleID)).throwingServerError()
        }
        return summary
    }

    /// Adds rejection counts (code -> count) to the sale's statistics (nothing once the sale's keys are gone).
    public func addRejections(saleID: String, _ counts: [String: Int]) throws(RedisError) {
        guard !counts.isEmpty else { return }
        var arguments = RedisCommand()
        for (code, count) in counts.sorted(by: { $0.key < $1.key }) {
            arguments.append(code)
            arguments.append(count)
        }
        let reply = try connection.evaluate(LedgerScripts.addRejections, keys: LedgerKeys(saleID: saleID).retained, arguments: arguments)
        if let message = reply.errorMessage { throw RedisError(.serverError, "add_rejections: \(message)") }
    }

    /// Waitlist entries served after stream id `after`, at most `limit`, and the last id seen. With `after`
    /// nil it only answers the newest id (a cursor to start from).
    public func servedWaiters(saleID: String, after: String?, limit: Int = 1_000) throws(RedisError) -> (served: [ServedWaiter], lastID: String) {
        precondition(limit > 0 && limit <= 10_000)
        let key = LedgerKeys(saleID: saleID).served
        guard let after else {
            let newest = try connection.send(RedisCommand("XREVRANGE", key, "+", "-", "COUNT", "1")).throwingServerError()
            return ([], newest.array?.first?.array?.first?.string ?? "0-0")
        }
        var command = RedisCommand("XRANGE", key, "(" + after, "+", "COUNT")
        command.append(limit)
        let entries = try connection.send(command).throwingServerError().array ?? []
        var served: [ServedWaiter] = []
        var lastID = after
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string, let fields = parts[1].array else { continue }
            lastID = id
            let values = Ledger.pairs(fields)
            if let customer = values["customer"], let orderID = values["orderId"], let quantity = values["quantity"].flatMap(Int.init) {
                served.append(ServedWaiter(customerID: customer, orderID: orderID, quantity: quantity))
            }
        }
        return (served, lastID)
    }

    /// Sale ids whose lifecycle is not settled yet.
    public func activeSaleIDs() throws(RedisError) -> [String] {
        let reply = try connection.send(RedisCommand("SMEMBERS", LedgerKeys.activeSales)).throwingServerError()
        return (reply.array ?? []).compactMap(\.string).filter(SaleDefinition.isValidID).sorted()
    }
}
