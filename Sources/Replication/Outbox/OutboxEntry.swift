/// One entry of a Redis stream, as `XREADGROUP` / `XAUTOCLAIM` answer it.
public struct StreamEntry: Sendable, Hashable {
    public let id: String
    /// Empty when the entry was deleted while pending (Redis answers its id with no fields).
    public let fields: [String: String]

    public init(id: String, fields: [String: String]) {
        self.id = id
        self.fields = fields
    }

    /// `<milliseconds>-<sequence>` as a pair, for ordering entries of one stream.
    public var position: (Int64, Int64) {
        let parts = id.split(separator: "-")
        return (Int64(parts.first ?? "0") ?? 0, Int64(parts.count > 1 ? parts[1] : "0") ?? 0)
    }

    /// Parses `[[id, [field, value, ...]], ...]`.
    static func parse(_ reply: RedisReply?) -> [StreamEntry] {
        guard let elements = reply?.array else { return [] }
        return elements.compactMap { element -> StreamEntry? in
            guard let pair = element.array, pair.count == 2, let id = pair[0].string else { return nil }
            return StreamEntry(id: id, fields: Ledger.pairs(pair[1].array ?? []))
        }
    }
}

/// How outbox and stock-log entries become MongoDB documents (collections `orders`, `stock_events`,
/// `sales`). Every write names its document by `_id`, so a replay after an unknown outcome is harmless:
/// an order is inserted once (`$setOnInsert`) and a later replay of its confirmation cannot undo a
/// cancellation that reached MongoDB in between.
public enum OutboxDocuments {
    public static let orders = "orders"
    public static let stockEvents = "stock_events"
    public static let sales = "sales"

    /// The indexes the queries need: a customer's orders in a sale, a sale's orders and events by time.
    public static let indexes: [(collection: String, indexes: [MongoIndex])] = [
        (orders, [
            MongoIndex(name: "sale_customer", keys: ["saleId": .int32(1), "customerId": .int32(1)]),
            MongoIndex(name: "sale_created", keys: ["saleId": .int32(1), "createdAt": .int32(1)]),
            MongoIndex(name: "customer_created", keys: ["customerId": .int32(1), "createdAt": .int32(-1)]),
            // A customer's orders in a sale, newest first (`/me` of a retired sale).
            MongoIndex(name: "sale_customer_created", keys: ["saleId": .int32(1), "customerId": .int32(1), "createdAt": .int32(1)]),
        ]),
        (stockEvents, [MongoIndex(name: "sale_at", keys: ["saleId": .int32(1), "at": .int32(1)])]),
        (sales, [
            MongoIndex(name: "status_starts", keys: ["status": .int32(1), "startsAt": .int32(1)]),
            // `GET /admin/sales`: newest start first, keyset-paged by (startsAt, _id).
            MongoIndex(name: "starts_id", keys: ["startsAt": .int32(1), "_id": .int32(1)]),
        ]),
    ]

    /// One order event of the outbox, ready for MongoDB: `confirmation` (a new order, written once) or a
    /// cancellation. The drainer compensates a confirmation MongoDB refuses for good.
    public struct OrderWrite: Sendable {
        public let orderID: String
        public let confirmation: Bool
        public let write: MongoWrite
    }

    /// The writes for one outbox entry: one for `order` and `cancel` entries, one per record for an `orders`
    /// entry (a commit batch as an earlier version wrote it: `records` is a JSON array of ledger order records).
    /// nil for an entry that is not an order event, or is malformed.
    public static func orderWrites(saleID: String, entry: StreamEntry) -> [OrderWrite]? {
        let fields = entry.fields
        if fields["type"] == "orders" {
            guard let text = fields["records"],
                  let records = try? JSONDecoder().decode([OrderRecord].self, from: Data(text.utf8)), !records.isEmpty else { return nil }
            return records.enumerated().map { index, record in confirmation(saleID: saleID, entry: entry, index: index, record: record) }
        }
        guard let orderID = fields["orderId"], let customer = fields["customer"],
              let quantity = fields["quantity"].flatMap(Int64.init), let at = fields["at"].flatMap(Int64.init) else { return nil }
        // Everything but the status is a fact of the order: set once, whichever event arrives first.
        func facts(createdAt: Int64) -> BSONDocument {
            orderFacts(saleID: saleID, entry: entry, index: 0, customer: customer, quantity: quantity, createdAt: createdAt,
                       delivery: fields["delivery"] ?? "", key: fields["key"] ?? "", shard: fields["shard"] ?? "",
                       fence: fields["fence"].flatMap(Int64.init) ?? 0, instance: fields["instance"] ?? "",
                       source: fields["source"] ?? "bucket")
        }
        switch fields["type"] {
        case "order":
            var insert = facts(createdAt: at)
            insert["status"] = "confirmed"
            return [OrderWrite(orderID: orderID, confirmation: true,
                               write: .upsert(id: .string(orderID), update: ["$setOnInsert": .document(insert)]))]
        case "cancel":
            return [OrderWrite(orderID: orderID, confirmation: false, write: .upsert(id: .string(orderID), update: [
                "$set": .document(["status": "cancelled", "cancelledAt": .date(at)]),
                "$setOnInsert": .document(facts(createdAt: fields["createdAt"].flatMap(Int64.init) ?? at)),
            ]))]
        default:
            return nil
        }
    }

    /// The order ids a commit-log entry names (``LedgerKeys/commits``: `ids`, space-separated, at least one);
    /// nil for a malformed entry.
    public static func committedOrderIDs(_ entry: StreamEntry) -> [String]? {
        guard let text = entry.fields["ids"] else { return nil }
        let ids = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        return ids.isEmpty ? nil : ids
    }

    /// The writes for one commit-log entry: a confirmation per order it names, in its order, from the order's
    /// record as the ledger holds it now (`records`, by id). Only a record's status changes after its commit,
    /// and a confirmation writes the facts with status `confirmed` on insert, as the batch's entry did when
    /// it carried the records; a cancellation follows through the outbox. nil when the entry is malformed or
    /// names an order `records` lacks (which retirement rules out: see `retire_sale.lua`).
    public static func commitWrites(saleID: String, entry: StreamEntry, records: [String: OrderRecord]) -> [OrderWrite]? {
        guard let ids = committedOrderIDs(entry) else { return nil }
        var writes: [OrderWrite] = []
        writes.reserveCapacity(ids.count)
        for (index, id) in ids.enumerated() {
            guard let record = records[id], record.orderID == id else { return nil }
            writes.append(confirmation(saleID: saleID, entry: entry, index: index, record: record))
        }
        return writes
    }

    /// A batch's order confirmed: its facts (from the ledger's record) with status `confirmed`, written once.
    private static func confirmation(saleID: String, entry: StreamEntry, index: Int, record: OrderRecord) -> OrderWrite {
        var insert = orderFacts(saleID: saleID, entry: entry, index: index, customer: record.customerID, quantity: Int64(record.quantity),
                                createdAt: record.createdAtMilliseconds, delivery: record.delivery, key: record.idempotencyKey,
                                shard: record.shardID, fence: record.fence, instance: record.instanceID, source: record.source)
        insert["status"] = "confirmed"
        return OrderWrite(orderID: record.orderID, confirmation: true,
                          write: .upsert(id: .string(record.orderID), update: ["$setOnInsert": .document(insert)]))
    }

    /// An order of the ledger written again (`flashsale orders reexport`): its facts if MongoDB lacks it, and the
    /// ledger's status (the truth while the sale's keys live). Its outbox position is unknown: `outboxId` is its
    /// creation time, so a rebuild still orders such orders by time.
    public static func reexportWrite(saleID: String, record: OrderRecord) -> MongoWrite {
        var facts = orderFacts(saleID: saleID, entry: StreamEntry(id: "\(record.createdAtMilliseconds)-0", fields: [:]), index: 0,
                               customer: record.customerID, quantity: Int64(record.quantity), createdAt: record.createdAtMilliseconds,
                               delivery: record.delivery, key: record.idempotencyKey, shard: record.shardID, fence: record.fence,
                               instance: record.instanceID, source: record.source)
        facts["status"] = nil
        var status: BSONDocument = ["status": .string(record.status.rawValue)]
        if let at = record.cancelledAtMilliseconds { status["cancelledAt"] = .date(at) }
        if let at = record.failedAtMilliseconds { status["failedAt"] = .date(at) }
        return .upsert(id: .string(record.orderID), update: ["$set": .document(status), "$setOnInsert": .document(facts)])
    }

    /// The facts of an order (everything but its status). `outboxId` and `outboxIndex` (the order's place in
    /// a batch entry) give a rebuild the ledger's order of the orders.
    private static func orderFacts(
        saleID: String, entry: StreamEntry, index: Int, customer: String, quantity: Int64, createdAt: Int64,
        delivery: String, key: String, shard: String, fence: Int64, instance: String, source: String
    ) -> BSONDocument {
        [
            "saleId": .string(saleID),
            "customerId": .string(customer),
            "quantity": .int64(quantity),
            "createdAt": .date(createdAt),
            "delivery": .string(delivery),
            "idempotencyKey": .string(key),
            "shard": .string(shard),
            "fence": .int64(fence),
            "instance": .string(instance),
            "source": .string(source),
            "outboxId": .string(entry.id),
            "outboxIndex": .int64(Int64(index)),
        ]
    }

    /// The write for one stock-log entry.
    public static func stockEventWrite(saleID: String, entry: StreamEntry) -> MongoWrite {
        let fields = entry.fields
        func integer(_ name: String) -> BSONValue { .int64(fields[name].flatMap(Int64.init) ?? 0) }
        return .replace([
            "_id": .string("\(saleID):\(entry.id)"),
            "saleId": .string(saleID),
            "at": .date(fields["at"].flatMap(Int64.init) ?? entry.position.0),
            "reason": .string(fields["reason"] ?? ""),
            "delta": integer("delta"),
            "sold": integer("sold"),
            "pool": integer("pool"),
            "fence": integer("fence"),
            "instance": .string(fields["instance"] ?? ""),
        ])
    }

    /// The sale document: readable fields, the ledger's meta hash verbatim (`ledgerMeta`, what a rebuild
    /// restores) and, once the sale closed, the final summary.
    public static func saleWrite(saleID: String, meta: [String: String], summaryJSON: String?) -> MongoWrite {
        func integer(_ name: String) -> Int64? { meta[name].flatMap(Int64.init) }
        var document: BSONDocument = [
            "_id": .string(saleID),
            "name": .string(meta["name"] ?? ""),
            "stock": .int64(integer("stock") ?? 0),
            "perCustomerLimit": .int64(integer("limit") ?? 0),
            "startsAt": .date(integer("startMs") ?? 0),
            "endsAt": .date(integer("endMs") ?? 0),
            "status": .string(meta["status"] ?? ""),
        ]
        if let reason = meta["closedReason"] { document["closedReason"] = .string(reason) }
        if let closed = integer("closedAtMs") { document["closedAt"] = .date(closed) }
        document["ledgerMeta"] = .document(BSONDocument(meta.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
        if let summaryJSON {
            document["summaryJSON"] = .string(summaryJSON)
            if let summary = BSONValue(json: summaryJSON) { document["summary"] = summary }
        }
        return .replace(document)
    }
}

import Foundation

extension BSONValue {
    /// A JSON text as BSON (object keys sorted; integers as int64, other numbers as doubles).
    init?(json: String) {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)) else { return nil }
        self = value.bson
    }
}

/// Any JSON value, decoded without Foundation's `Any` bridging (which cannot tell `true` from `1` on Linux).
private enum JSONValue: Decodable {
    case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        if let object = try? decoder.container(keyedBy: Key.self) {
            var fields: [String: JSONValue] = [:]
            for key in object.allKeys { fields[key.stringValue] = try object.decode(JSONValue.self, forKey: key) }
            self = .object(fields)
        } else if var array = try? decoder.unkeyedContainer() {
            var elements: [JSONValue] = []
            while !array.isAtEnd { elements.append(try array.decode(JSONValue.self)) }
            self = .array(elements)
        } else {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() { self = .null }
            else if let flag = try? single.decode(Bool.self) { self = .bool(flag) }
            else if let integer = try? single.decode(Int64.self) { self = .integer(integer) }
            else if let number = try? single.decode(Double.self) { self = .number(number) }
            else { self = .string(try single.decode(String.self)) }
        }
    }

    var bson: BSONValue {
        switch self {
        case .null: .null
        case .bool(let flag): .bool(flag)
        case .integer(let integer): .int64(integer)
        case .number(let number): .double(number)
        case .string(let text): .string(text)
        case .array(let elements): .array(elements.map(\.bson))
        case .object(let fields): .document(BSONDocument(fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value.bson) }))
        }
    }
}
