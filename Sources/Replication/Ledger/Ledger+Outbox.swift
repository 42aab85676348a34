import Foundation

/// The outcome of ``Ledger/failOrder(saleID:orderID:reason:)``.
public enum FailOrderOutcome: Sendable, Equatable {
    /// The order was confirmed; it is failed now and its units are back.
    case failed(OrderRecord)
    /// The order was already cancelled or failed: nothing changed.
    case unchanged(OrderRecord)
    case notFound
}

extension Ledger {
    /// The compensating transaction for an order the order store refused for good.
    public func failOrder(saleID: String, orderID: String, reason: String) throws(RedisError) -> FailOrderOutcome {
        var arguments = RedisCommand()
        arguments.append(orderID)
        arguments.append(reason)
        let reply = try connection.evaluate(LedgerScripts.failOrder, keys: LedgerKeys(saleID: saleID).retained, arguments: arguments)
        if let message = reply.errorMessage {
            assert(!message.hasPrefix("INVARIANT"), "ledger invariant broken by fail_order: \(message)")
            throw RedisError(.serverError, "fail_order: \(message)")
        }
        guard let elements = reply.array, let tag = elements.first?.string else {
            throw RedisError(.unexpectedReply, "fail_order answered \(reply)")
        }
        if tag == "NOT_FOUND" { return .notFound }
        guard elements.count >= 2, case .bulk(let json) = elements[1] else {
            throw RedisError(.unexpectedReply, "fail_order answered \(reply)")
        }
        let record = try OrderRecord(ledgerJSON: json)
        // After close, the script stored the recomputed summary itself (the drainer writes it to MongoDB).
        guard tag == "OK" else { return .unchanged(record) }
        return .failed(record)
    }

    /// The ledger meta hash of a sale (empty when the sale has no live ledger).
    public func meta(saleID: String) throws(RedisError) -> [String: String] {
        Self.pairs(try connection.send(RedisCommand("HGETALL", LedgerKeys(saleID: saleID).meta)).throwingServerError().array ?? [])
    }
}
