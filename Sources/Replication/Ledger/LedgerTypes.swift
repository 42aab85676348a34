import Foundation
import ReservationEngine

/// An order as the ledger stores it: confirmed, cancelled, or failed (the order store refused it for good
/// and the compensating transaction gave its units back).
public struct OrderRecord: Sendable, Hashable, Codable {
    public enum Status: String, Sendable, Hashable, Codable {
        case confirmed
        case cancelled
        case failed
    }

    public var orderID: String
    public var customerID: String
    public var quantity: Int
    public var createdAtMilliseconds: Int64
    public var status: Status
    public var idempotencyKey: String
    public var delivery: String
    public var shardID: String
    public var fence: Int64
    public var instanceID: String
    /// "bucket" (sold from a lease) or "waitlist" (served from freed units).
    public var source: String
    public var cancelledAtMilliseconds: Int64?
    public var failedAtMilliseconds: Int64?
    public var failureReason: String?

    enum CodingKeys: String, CodingKey {
        case orderID = "id", customerID = "c", quantity = "q", createdAtMilliseconds = "t", status = "s"
        case idempotencyKey = "k", delivery = "d", shardID = "sh", fence = "f", instanceID = "i", source = "src"
        case cancelledAtMilliseconds = "ct", failedAtMilliseconds = "ft", failureReason = "fr"
    }

    public init(
        orderID: String, customerID: String, quantity: Int, createdAtMilliseconds: Int64, status: Status,
        idempotencyKey: String, delivery: String, shardID: String, fence: Int64, instanceID: String, source: String,
        cancelledAtMilliseconds: Int64? = nil, failedAtMilliseconds: Int64? = nil, failureReason: String? = nil
    ) {
        self.orderID = orderID
        self.customerID = customerID
        self.quantity = quantity
        self.createdAtMilliseconds = createdAtMilliseconds
        self.status = status
        self.idempotencyKey = idempotencyKey
        self.delivery = delivery
        self.shardID = shardID
        self.fence = fence
        self.instanceID = instanceID
        self.source = source
        self.cancelledAtMilliseconds = cancelledAtMilliseconds
        self.failedAtMilliseconds = failedAtMilliseconds
        self.failureReason = failureReason
    }

    /// Decodes the JSON the ledger scripts write.
    public init(ledgerJSON: [UInt8]) throws(RedisError) {
        do {
            self = try JSONDecoder().decode(OrderRecord.self, from: Data(ledgerJSON))
        } catch {
            throw RedisError(.unexpectedReply, "order record is not valid JSON: \(error)")
        }
    }
}

/// One point of an instance's waiting customers, in arrival order: the customers who arrived up to
/// `arrivalMicroseconds` (wall clock of the instance, microseconds since 1970) want `cumulativeUnits` in all.
public struct ArrivalPoint: Sendable, Hashable {
    public var arrivalMicroseconds: Int64
    public var cumulativeUnits: Int

    /// Points sent with one lease request at most (the customers beyond wait for the next lease).
    public static let maximumPerLease = 128

    public init(arrivalMicroseconds: Int64, cumulativeUnits: Int) {
        precondition(arrivalMicroseconds >= 0 && cumulativeUnits >= 1)
        self.arrivalMicroseconds = arrivalMicroseconds
        self.cumulativeUnits = cumulativeUnits
    }
}

/// The answer to a lease request.
public enum LeaseAcquisition: Sendable, Hashable {
    case granted(fence: Int64, units: Int, expiresAtMilliseconds: Int64, ledgerNowMilliseconds: Int64)
    /// No unit in the pool (or customers are waiting for freed units).
    case empty(sold: Int, leased: Int, waitlist: Int)
    /// Customers of another instance who arrived earlier are waiting for units: lease none now, ask again.
    case wait(earliestArrivalMicroseconds: Int64)
    case closed(ClosedReason)
    case notStarted(millisecondsUntilStart: Int64)
    case notFound
}

/// The global numbers of a sale, as the last ledger call saw them.
public struct LedgerView: Sendable, Hashable {
    public var status: SaleStatus
    public var closedReason: ClosedReason?
    public var stock: Int
    public var sold: Int
    public var pool: Int
    public var leased: Int
    public var waitlist: Int
    public var ledgerNowMilliseconds: Int64

    /// Units not sold yet (in the pool or held by leases).
    public var available: Int { stock - sold }
}

/// One reservation decided locally, waiting to be committed to the ledger.
public struct PendingCommit: Sendable, Hashable {
    public var orderID: String
    public var shardID: String
    public var fence: Int64
    public var customerID: String
    public var quantity: Int
    public var idempotencyKey: String
    public var delivery: String

    public init(orderID: String, shardID: String, fence: Int64, customerID: String, quantity: Int, idempotencyKey: String, delivery: String) {
        self.orderID = orderID
        self.shardID = shardID
        self.fence = fence
        self.customerID = customerID
        self.quantity = quantity
        self.idempotencyKey = idempotencyKey
        self.delivery = delivery
    }
}

/// What the commit script decided for one order.
public enum CommitOutcome: Sendable, Hashable {
    case committed(createdAtMilliseconds: Int64)
    /// Already in the ledger: this very order (a replayed batch) or an earlier one with the same key.
    case duplicate(OrderRecord)
    /// The customer's idempotency key names their waitlist entry (joined on another instance, say):
    /// nothing was reserved; the entry's position is the answer.
    case waitlisted(position: Int)
    case limitExceeded(purchased: Int)
    /// The lease is gone (reclaimed after its expiry, returned, revoked) or carries another fence: nothing was reserved.
    case fenced
    case closed(ClosedReason)
    case notFound
    /// The ledger could not be reached, or did not answer; whether it committed is unknown.
    case unavailable(RedisError)
}

/// What the textbook one-call-per-order path decided (comparison mode only).
public enum DirectOrderOutcome: Sendable, Hashable {
    case committed(createdAtMilliseconds: Int64)
    case duplicate(OrderRecord)
    case waitlisted(position: Int)
    case limitExceeded(purchased: Int)
    case insufficientStock(unsold: Int)
    case closed(ClosedReason)
    case notStarted(millisecondsUntilStart: Int64)
    case notFound
}

public enum WaitlistOutcome: Sendable, Hashable {
    case waiting(position: Int)
    case served(OrderRecord)
    case duplicate(OrderRecord)
    /// Units are free in the pool: lease them instead of waiting.
    case retry
    case limitExceeded(purchased: Int)
    case insufficientStock(unsold: Int)
    case closed(ClosedReason)
    case notStarted(millisecondsUntilStart: Int64)
    case notFound
}

public enum CancelOutcome: Sendable, Hashable {
    case cancelled(OrderRecord)
    case notFound
    case closed(ClosedReason)
}

/// One row of the lease table.
public struct LeaseRecord: Sendable, Hashable, Codable {
    public var shardID: String
    public var owner: String
    public var fence: Int64
    public var remaining: Int
    public var expiresAtMilliseconds: Int64
}

/// An atomic read of a whole sale, for the admin shard table, summaries and invariant checks.
public struct LedgerSnapshot: Sendable, Hashable {
    public var definition: SaleDefinition
    public var status: SaleStatus
    public var closedReason: ClosedReason?
    public var pool: Int
    public var sold: Int
    public var leases: [LeaseRecord]
    public var waitlist: Int
    public var buyers: Int
    public var statistics: [String: Int64]
    public var timestamps: [String: Int64]
    public var ledgerNowMilliseconds: Int64

    public var leased: Int { leases.reduce(0) { $0 + $1.remaining } }

    /// `pool + Σ leases.remaining + sold == stock` and `0 <= sold <= stock`.
    public var invariantHolds: Bool {
        pool >= 0 && sold >= 0 && sold <= definition.stock && leases.allSatisfy { $0.remaining >= 0 }
            && pool + leased + sold == definition.stock
    }
}
