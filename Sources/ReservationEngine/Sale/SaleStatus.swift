/// The lifecycle of a sale: `scheduled -> open -> closed`.
public enum SaleStatus: String, Sendable, Hashable, Codable {
    case scheduled
    case open
    case closed
}

/// Why a sale closed.
public enum ClosedReason: String, Sendable, Hashable, Codable {
    case soldOut = "sold_out"
    case ended
    /// Closed by an operator before its end.
    case closed
}

/// Decides whether an order may be attempted now, from the sale's window and the last status the ledger
/// reported. The ledger re-checks with Redis time at commit; this check only saves a round trip.
public struct SaleWindow: Sendable, Hashable {
    public let definition: SaleDefinition

    public init(definition: SaleDefinition) {
        self.definition = definition
    }

    public enum Admission: Sendable, Hashable {
        case open
        case notStarted(retryAfterSeconds: Int)
        case ended
        case soldOut
    }

    public func admission(nowMilliseconds: Int64, status: SaleStatus, closedReason: ClosedReason?) -> Admission {
        if status == .closed {
            return closedReason == .soldOut ? .soldOut : .ended
        }
        if nowMilliseconds < definition.startsAtMilliseconds {
            let waitMilliseconds = definition.startsAtMilliseconds - nowMilliseconds
            return .notStarted(retryAfterSeconds: Int((waitMilliseconds + 999) / 1_000))
        }
        if nowMilliseconds >= definition.endsAtMilliseconds {
            return .ended
        }
        return .open
    }

    /// The status a reader should see at `nowMilliseconds` when the ledger has not closed the sale yet.
    public func status(nowMilliseconds: Int64, ledgerStatus: SaleStatus) -> SaleStatus {
        if ledgerStatus == .closed { return .closed }
        if nowMilliseconds < definition.startsAtMilliseconds { return .scheduled }
        if nowMilliseconds >= definition.endsAtMilliseconds { return .closed }
        return .open
    }
}
