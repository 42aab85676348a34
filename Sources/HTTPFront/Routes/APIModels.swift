import Foundation
import Hummingbird
import NIOCore
import Replication
import ReservationEngine

// Request bodies. Unknown fields are ignored; wrong types and missing fields are INVALID_REQUEST.

struct CreateSaleBody: Decodable {
    var id: String?
    var name: String
    var stock: Int
    var startsAt: String
    var endsAt: String?
    var durationSeconds: Int?
    var perCustomerLimit: Int?
}

struct OrderBody: Decodable, Equatable {
    struct Delivery: Codable, Equatable {
        var name: String
        var phone: String
        var address: String
    }
    var quantity: Int
    var delivery: Delivery

    private enum CodingKeys: String, CodingKey { case quantity, delivery }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        delivery = try container.decode(Delivery.self, forKey: .delivery)
        if let whole = try? container.decode(Int.self, forKey: .quantity) {
            quantity = whole
        } else if (try? container.decode(Double.self, forKey: .quantity)) != nil {
            // A number, but not a whole one (1.5) or out of range: say so, not "invalid JSON".
            throw Problem.invalidRequest("quantity must be a whole number")
        } else {
            quantity = try container.decode(Int.self, forKey: .quantity)
        }
    }
}

extension OrderBody {
    /// The order body read from its bytes by ``JSONObject`` (the hot path: no `JSONDecoder`, no `Data`),
    /// with the problems ``Request/decodeJSON(_:from:)`` gives for the same input. Unknown fields are
    /// ignored; a repeated field is refused (JSON leaves its meaning open).
    static func decode(_ buffer: ByteBuffer) throws(Problem) -> OrderBody {
        guard buffer.readableBytes > 0 else { throw Problem.invalidRequest("a JSON body is required") }
        guard let body = JSONObject(Array(buffer.readableBytesView), maxMembers: 1_024) else {
            // Off the hot path: JSONDecoder names what is wrong in the words it always did; where it is more
            // lenient than RFC 8259 (a trailing comma, a byte-order mark) or keeps one of two
            // repeated fields, the body is still refused.
            do {
                _ = try Request.decodeJSON(OrderBody.self, from: buffer)
            } catch let problem as Problem {
                throw problem
            } catch {}
            throw Problem.invalidRequest("the body is not valid JSON (UTF-8), or repeats a field")
        }
        let quantity: Int
        switch body["quantity"] {
        case nil: throw Problem.invalidRequest("missing field quantity")
        case .null?: throw Problem.invalidRequest("null is not allowed for quantity")
        case .number(let number)?:
            // Exactly representable whole numbers only (|n| < 2^53): 1.5 and 1e30 are not quantities.
            guard number.rounded() == number, abs(number) < 9_007_199_254_740_992 else {
                throw Problem.invalidRequest("quantity must be a whole number")
            }
            quantity = Int(number)
        case _?: throw Problem.invalidRequest("wrong type for quantity: expected a whole number")
        }
        let fields: JSONObject
        switch body["delivery"] {
        case nil: throw Problem.invalidRequest("missing field delivery")
        case .null?: throw Problem.invalidRequest("null is not allowed for delivery")
        case .object(let object)?: fields = object
        case _?: throw Problem.invalidRequest("wrong type for delivery: expected an object")
        }
        func text(_ name: String) throws(Problem) -> String {
            switch fields[name] {
            case nil: throw Problem.invalidRequest("missing field delivery.\(name)")
            case .null?: throw Problem.invalidRequest("null is not allowed for delivery.\(name)")
            case .string(let value)?: return value
            case _?: throw Problem.invalidRequest("wrong type for delivery.\(name): expected a string")
            }
        }
        return OrderBody(quantity: quantity, delivery: Delivery(name: try text("name"), phone: try text("phone"), address: try text("address")))
    }

    init(quantity: Int, delivery: Delivery) {
        self.quantity = quantity
        self.delivery = delivery
    }
}

struct RebalanceBody: Decodable {
    var mode: String
    var instance: String?
}

// Responses.

struct SaleResponse: Encodable {
    var id: String
    var name: String
    var stock: Int
    var startsAt: String
    var endsAt: String
    var perCustomerLimit: Int
    var status: String
    var available: Int
    var sold: Int
    /// `sold_out`, `ended` or `closed` once closed; absent before.
    var closedReason: String?
    /// The list's sort key (not encoded).
    var startsAtMilliseconds: Int64

    enum CodingKeys: String, CodingKey { case id, name, stock, startsAt, endsAt, perCustomerLimit, status, available, sold, closedReason }

    init(definition: SaleDefinition, view: LedgerView?) {
        id = definition.id
        startsAtMilliseconds = definition.startsAtMilliseconds
        name = definition.name
        stock = definition.stock
        startsAt = Timestamps.format(milliseconds: definition.startsAtMilliseconds)
        endsAt = Timestamps.format(milliseconds: definition.endsAtMilliseconds)
        perCustomerLimit = definition.perCustomerLimit
        let window = SaleWindow(definition: definition)
        status = window.status(nowMilliseconds: Timestamps.nowMilliseconds, ledgerStatus: view?.status ?? .scheduled).rawValue
        sold = view?.sold ?? 0
        available = definition.stock - sold
        closedReason = status == SaleStatus.closed.rawValue ? (view?.closedReason ?? .ended).rawValue : nil
    }
}

struct SaleListResponse: Encodable {
    var sales: [SaleResponse]
    /// The cursor of the next page; null on the last.
    var next: String?

    func encode(to encoder: any Encoder) throws {
        enum Keys: String, CodingKey { case sales, next }
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(sales, forKey: .sales)
        try container.encode(next, forKey: .next)
    }
}

struct StockResponse: Encodable {
    var available: Int
    var sold: Int
    var status: String
    var waitlist: Int
    var asOf: String

    init(definition: SaleDefinition, view: LedgerView) {
        sold = view.sold
        available = view.available
        status = SaleWindow(definition: definition).status(nowMilliseconds: Timestamps.nowMilliseconds, ledgerStatus: view.status).rawValue
        waitlist = view.waitlist
        asOf = Timestamps.format(milliseconds: view.ledgerNowMilliseconds)
    }
}

struct OrderResponse: Encodable {
    var orderId: String
    var saleId: String
    var customerId: String
    var quantity: Int
    var status: String
    var createdAt: String
    var delivery: OrderBody.Delivery?

    init(_ record: OrderRecord, saleID: String) {
        orderId = record.orderID
        saleId = saleID
        customerId = record.customerID
        quantity = record.quantity
        status = record.status.rawValue
        createdAt = Timestamps.format(milliseconds: record.createdAtMilliseconds)
    }
}

struct WaitlistedResponse: Encodable {
    var status = "waitlisted"
    var position: Int
}

struct MeResponse: Encodable {
    struct Position: Encodable { var position: Int }
    var purchased: Int
    var orders: [OrderResponse]
    var waitlist: Position?

    enum CodingKeys: String, CodingKey { case purchased, orders, waitlist }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(purchased, forKey: .purchased)
        try container.encode(orders, forKey: .orders)
        if let waitlist { try container.encode(waitlist, forKey: .waitlist) } else { try container.encodeNil(forKey: .waitlist) }
    }
}

struct CancelResponse: Encodable {
    var orderId: String
    /// `cancelled`, or `failed` for an order the order store refused (it held nothing to cancel).
    var status: String
}

struct SummaryResponse: Encodable {
    struct Waitlist: Encodable { var joined: Int; var served: Int; var unserved: Int }
    var final: Bool
    var status: String
    var stock: Int
    var sold: Int
    var orders: Int
    var buyers: Int
    var openedAt: String?
    var soldOutAt: String?
    var sellOutMilliseconds: Int64?
    var closedAt: String?
    var closedReason: String?
    var cancelled: Int
    var rejections: [String: Int]
    var waitlist: Waitlist

    enum CodingKeys: String, CodingKey {
        case final, status, stock, sold, orders, buyers, openedAt, soldOutAt, sellOutMilliseconds, closedAt, closedReason, cancelled, rejections, waitlist
    }

    init(_ summary: SaleSummary) {
        final = summary.final
        status = summary.status.rawValue
        stock = summary.stock
        sold = summary.sold
        orders = summary.orders
        buyers = summary.buyers
        openedAt = summary.openedAtMilliseconds.map(Timestamps.format(milliseconds:))
        soldOutAt = summary.soldOutAtMilliseconds.map(Timestamps.format(milliseconds:))
        sellOutMilliseconds = summary.sellOutMilliseconds
        closedAt = summary.closedAtMilliseconds.map(Timestamps.format(milliseconds:))
        closedReason = summary.closedReason?.rawValue
        cancelled = summary.cancelled
        rejections = summary.rejections
        waitlist = Waitlist(joined: summary.waitlistJoined, served: summary.waitlistServed, unserved: summary.waitlistUnserved)
    }

    /// Absent times are explicit nulls, so every field of the contract is always present.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(final, forKey: .final)
        try container.encode(status, forKey: .status)
        try container.encode(stock, forKey: .stock)
        try container.encode(sold, forKey: .sold)
        try container.encode(orders, forKey: .orders)
        try container.encode(buyers, forKey: .buyers)
        try container.encode(openedAt, forKey: .openedAt)
        try container.encode(soldOutAt, forKey: .soldOutAt)
        try container.encode(sellOutMilliseconds, forKey: .sellOutMilliseconds)
        try container.encode(closedAt, forKey: .closedAt)
        try container.encode(closedReason, forKey: .closedReason)
        try container.encode(cancelled, forKey: .cancelled)
        try container.encode(rejections, forKey: .rejections)
        try container.encode(waitlist, forKey: .waitlist)
    }
}

struct ShardsResponse: Encodable {
    struct Lease: Encodable {
        var shardId: String
        var owner: String
        var fence: Int64
        var remaining: Int
        var expiresAt: String
    }
    var pool: Int
    var sold: Int
    var stock: Int
    var leases: [Lease]
    var instances: [String]
    /// Confirmed orders not yet written to MongoDB.
    var outboxBacklog: Int

    init(_ snapshot: LedgerSnapshot, outboxBacklog: Int) {
        self.outboxBacklog = outboxBacklog
        pool = snapshot.pool
        sold = snapshot.sold
        stock = snapshot.definition.stock
        leases = snapshot.leases.map {
            Lease(shardId: $0.shardID, owner: $0.owner, fence: $0.fence, remaining: $0.remaining,
                  expiresAt: Timestamps.format(milliseconds: $0.expiresAtMilliseconds))
        }
        instances = Array(Set(snapshot.leases.map(\.owner))).sorted()
    }
}

struct RebalanceResponse: Encodable {
    var revokedLeases: Int
    var returnedUnits: Int
}
