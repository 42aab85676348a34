import Foundation
import ReservationEngine
import Synchronization

/// What MongoDB keeps of sales and orders, read back for the routes once Redis no longer holds a sale (its keys
/// retired after `FLASHSALE_RETENTION_SECONDS`, or a replaced Redis). While a sale's keys live, Redis answers;
/// this is never on the order path.
///
/// Reads go where the client's read preference sends them (``readURI(_:readPreference:)``: secondaries by
/// default, at most 90 s stale), so reads scale apart from the `w:majority` writes of the outbox drainer. At most
/// ``maxConcurrentReads`` finds are in flight per instance: beyond that a read is refused at once (`busy`), so a
/// flood of made-up ids cannot become a flood on MongoDB.
public final class SaleArchive: Sendable {
    /// A settled sale as its MongoDB document holds it (the drainer writes it at every change and once closed).
    public struct ArchivedSale: Sendable, Hashable {
        public var definition: SaleDefinition
        public var status: SaleStatus
        public var closedReason: ClosedReason?
        /// The final summary, stored with the sale once it closed.
        public var summary: SaleSummary?

        /// The final numbers as a view of the ledger (nothing leased, nothing pooled once settled).
        public var view: LedgerView {
            LedgerView(status: status, closedReason: closedReason, stock: definition.stock, sold: summary?.sold ?? 0,
                       pool: 0, leased: 0, waitlist: 0, ledgerNowMilliseconds: Int64(Date().timeIntervalSince1970 * 1_000))
        }
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// MongoDB did not answer (or refused): the caller answers 503 RETRY_LATER, never an empty result.
        case unavailable(String)
        /// Too many archive reads in flight on this instance.
        case busy
        /// A document lacks what the read needs.
        case malformed(String)

        public var description: String {
            switch self {
            case .unavailable(let message): "MongoDB is unavailable: \(message)"
            case .busy: "too many reads of settled sales at once"
            case .malformed(let message): "a stored document is malformed: \(message)"
            }
        }
    }

    public static let defaultMaxConcurrentReads = 32
    /// The most orders one customer can hold in a sale (its per-customer limit is at most 100 units) plus the
    /// newest cancelled or failed ones, as `/me` answers them from Redis.
    public static let customerOrdersLimit = 100 + Ledger.customerViewPastOrders

    private let mongo: MongoClient
    private let maxConcurrentReads: Int
    private let readsInFlight = Atomic<Int>(0)

    public init(mongo: MongoClient, maxConcurrentReads: Int = SaleArchive.defaultMaxConcurrentReads) {
        precondition(maxConcurrentReads > 0, "maxConcurrentReads must be positive")
        self.mongo = mongo
        self.maxConcurrentReads = maxConcurrentReads
    }

    /// The URI for archive reads: `readPreference` (and `maxStalenessSeconds=90`, the least MongoDB allows, for
    /// a preference other than primary) added unless the URI sets them.
    public static func readURI(_ uri: String, readPreference: String) -> String {
        var options: [String] = []
        if !uri.contains("readPreference=") { options.append("readPreference=\(readPreference)") }
        if readPreference != "primary", !uri.contains("maxStalenessSeconds=") { options.append("maxStalenessSeconds=90") }
        guard !options.isEmpty else { return uri }
        // The options follow the path: `mongodb://hosts/db?a=b`; a URI without a path needs the slash first.
        let afterScheme = uri.range(of: "://").map { uri[$0.upperBound...] } ?? Substring(uri)
        let separator = uri.contains("?") ? "&" : (afterScheme.contains("/") ? "?" : "/?")
        return uri + separator + options.joined(separator: "&")
    }

    public static let readPreferences: Set<String> = ["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"]

    // MARK: Reads

    public func sale(id: String) async throws(Failure) -> ArchivedSale? {
        guard SaleDefinition.isValidID(id) else { return nil }
        guard let document = try await find(OutboxDocuments.sales, filter: ["_id": .string(id)], limit: 1).first else { return nil }
        return try Self.sale(from: document)
    }

    /// One order by id; nil when MongoDB has none (ids of the wrong shape never reach it).
    public func order(id: String) async throws(Failure) -> OrderRecord? {
        guard OrderID.saleID(of: id) != nil else { return nil }
        guard let document = try await find(OutboxDocuments.orders, filter: ["_id": .string(id)], limit: 1).first else { return nil }
        do { return try LedgerRebuild.record(from: document) } catch { throw .malformed("order \(id)") }
    }

    /// A customer's orders in a sale, oldest first (as `/me` answers from Redis): the ones holding units and the
    /// newest ``Ledger/customerViewPastOrders`` cancelled or failed ones.
    public func customerOrders(saleID: String, customerID: String) async throws(Failure) -> [OrderRecord] {
        let documents = try await find(OutboxDocuments.orders, filter: ["saleId": .string(saleID), "customerId": .string(customerID)],
                                       sort: ["createdAt": .int32(-1), "_id": .int32(-1)], limit: Self.customerOrdersLimit)
        var held: [OrderRecord] = []
        var past: [OrderRecord] = []
        for document in documents {
            let record: OrderRecord
            do { record = try LedgerRebuild.record(from: document) } catch { throw .malformed("an order of sale \(saleID)") }
            // Compared as bytes, as everywhere (MongoDB matched the string already; a look-alike never passes twice).
            guard CustomerKey.same(record.customerID, customerID) else { continue }
            if record.status == .confirmed { held.append(record) } else if past.count < Ledger.customerViewPastOrders { past.append(record) }
        }
        return (held + past).sorted { ($0.createdAtMilliseconds, $0.orderID) < ($1.createdAtMilliseconds, $1.orderID) }
    }

    /// Sales older than `cursor` in `(startsAt, id)` order, newest first, at most `count`; with `status`, only those.
    public func salePage(before cursor: (id: String, startsAtMilliseconds: Int64)?, count: Int, status: SaleStatus?) async throws(Failure) -> [ArchivedSale] {
        precondition(count > 0 && count <= 1_000, "a sale page is 1 to 1000")
        var filter: BSONDocument = [:]
        if let cursor {
            filter["$or"] = .array([
                .document(["startsAt": .document(["$lt": .date(cursor.startsAtMilliseconds)])]),
                .document(["startsAt": .date(cursor.startsAtMilliseconds), "_id": .document(["$lt": .string(cursor.id)])]),
            ])
        }
        if let status { filter["status"] = .string(status.rawValue) }
        let documents = try await find(OutboxDocuments.sales, filter: filter, sort: ["startsAt": .int32(-1), "_id": .int32(-1)], limit: count)
        var sales: [ArchivedSale] = []
        for document in documents { sales.append(try Self.sale(from: document)) }
        return sales
    }

    // MARK: Documents

    static func sale(from document: BSONDocument) throws(Failure) -> ArchivedSale {
        guard let id = document["_id"]?.string, let meta = document["ledgerMeta"]?.document,
              let stock = meta["stock"]?.string.flatMap(Int.init), let start = meta["startMs"]?.string.flatMap(Int64.init),
              let end = meta["endMs"]?.string.flatMap(Int64.init), let limit = meta["limit"]?.string.flatMap(Int.init),
              let status = meta["status"]?.string.flatMap(SaleStatus.init(rawValue:))
        else { throw .malformed("sale \(document["_id"]?.string ?? "?") lacks ledgerMeta (stock, startMs, endMs, limit, status)") }
        let summary = document["summaryJSON"]?.string.flatMap { try? JSONDecoder().decode(SaleSummary.self, from: Data($0.utf8)) }
        return ArchivedSale(
            definition: SaleDefinition(id: id, name: meta["name"]?.string ?? "", stock: stock, startsAtMilliseconds: start,
                                       endsAtMilliseconds: end, perCustomerLimit: limit),
            status: status, closedReason: meta["closedReason"]?.string.flatMap(ClosedReason.init(rawValue:)), summary: summary)
    }

    private func find(_ collection: String, filter: BSONDocument, sort: BSONDocument? = nil, limit: Int) async throws(Failure) -> [BSONDocument] {
        let admitted = readsInFlight.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
        defer { readsInFlight.wrappingSubtract(1, ordering: .acquiringAndReleasing) }
        guard admitted <= maxConcurrentReads else { throw .busy }
        do {
            return try await mongo.find(collection, filter: filter, sort: sort, limit: limit)
        } catch {
            throw .unavailable(error.message)
        }
    }
}
