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
///
/// A retired sale's document and summary never change again, nor do its orders: Redis caches them for every
/// instance (`fs:cache:{S}:sale`, `fs:cache:{S}:order:<id>`, each with a TTL; a cache that does not answer is
/// skipped, never an error). What MongoDB does not have is remembered in this process only, briefly and in a
/// bounded table (``NegativeCache``): an order id naming an unknown sale then never reaches MongoDB at all.
public final class SaleArchive: Sendable {
    /// A settled sale as its MongoDB document holds it (the drainer writes it at every change and once closed).
    public struct ArchivedSale: Sendable, Hashable, Codable {
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
    public var maxConcurrentReads: Int { configuration.maxConcurrentReads }
    /// The most orders one customer can hold in a sale (its per-customer limit is at most 100 units) plus the
    /// newest cancelled or failed ones, as `/me` answers them from Redis.
    public static let customerOrdersLimit = 100 + Ledger.customerViewPastOrders

    public struct Configuration: Sendable {
        /// How long Redis keeps a retired sale's document and summary (`FLASHSALE_READ_CACHE_SECONDS`).
        public var saleCacheSeconds = 300
        /// How long Redis keeps an order read from MongoDB.
        public var orderCacheSeconds = 60
        /// How long this process remembers that MongoDB has no such sale or order, and how many it remembers.
        public var negativeCacheMilliseconds: Int64 = 10_000
        public var negativeCacheEntries = 4_096
        public var maxConcurrentReads = SaleArchive.defaultMaxConcurrentReads

        public init() {}
    }

    private let mongo: MongoClient
    private let cache: RedisClient?
    private let configuration: Configuration
    private let observer: (any ArchiveObserver)?
    private let readsInFlight = Atomic<Int>(0)
    private let missing: NegativeCache

    public init(mongo: MongoClient, cache: RedisClient? = nil, configuration: Configuration = Configuration(), observer: (any ArchiveObserver)? = nil) {
        precondition(configuration.maxConcurrentReads > 0 && configuration.saleCacheSeconds >= 0 && configuration.orderCacheSeconds >= 0,
                     "archive bounds must be positive")
        self.mongo = mongo
        self.cache = cache
        self.configuration = configuration
        self.observer = observer
        self.missing = NegativeCache(capacity: configuration.negativeCacheEntries, lifetimeMilliseconds: configuration.negativeCacheMilliseconds)
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
        let key = "sale:" + id
        if missing.contains(key) { observer?.archiveRead(.negative); return nil }
        if let cached: ArchivedSale = await cached(Self.saleCacheKey(id)) {
            observer?.archiveRead(.hit)
            return cached
        }
        observer?.archiveRead(.miss)
        guard let document = try await find(OutboxDocuments.sales, filter: ["_id": .string(id)], limit: 1).first else {
            missing.insert(key)
            return nil
        }
        let sale = try Self.sale(from: document)
        // Only a settled sale is final; a live one's document still changes (and Redis answers for it anyway).
        if sale.status == .closed, sale.summary != nil {
            await store(sale, at: Self.saleCacheKey(id), seconds: configuration.saleCacheSeconds)
        }
        return sale
    }

    /// One order by id; nil when MongoDB has none (ids of the wrong shape never reach it, nor ids whose sale
    /// MongoDB does not know).
    public func order(id: String) async throws(Failure) -> OrderRecord? {
        guard let saleID = OrderID.saleID(of: id) else { return nil }
        let key = "order:" + id
        if missing.contains(key) || missing.contains("sale:" + saleID) { observer?.archiveRead(.negative); return nil }
        if let cached: OrderRecord = await cached(Self.orderCacheKey(saleID: saleID, orderID: id)) {
            observer?.archiveRead(.hit)
            return cached
        }
        guard try await sale(id: saleID) != nil else { return nil }
        observer?.archiveRead(.miss)
        guard let document = try await find(OutboxDocuments.orders, filter: ["_id": .string(id)], limit: 1).first else {
            missing.insert(key)
            return nil
        }
        let record: OrderRecord
        do { record = try LedgerRebuild.record(from: document) } catch { throw .malformed("order \(id)") }
        await store(record, at: Self.orderCacheKey(saleID: saleID, orderID: id), seconds: configuration.orderCacheSeconds)
        return record
    }

    static func saleCacheKey(_ saleID: String) -> String { "fs:cache:{\(saleID)}:sale" }
    static func orderCacheKey(saleID: String, orderID: String) -> String { "fs:cache:{\(saleID)}:order:\(orderID)" }

    /// A cached value, or nil (absent, undecodable, or the cache did not answer: MongoDB is asked instead).
    private func cached<Value: Decodable>(_ key: String) async -> Value? {
        guard let cache else { return nil }
        guard case .bulk(let bytes)? = try? await cache.send(RedisCommand("GET", key)) else { return nil }
        return try? JSONDecoder().decode(Value.self, from: Data(bytes))
    }

    private func store<Value: Encodable>(_ value: Value, at key: String, seconds: Int) async {
        guard let cache, seconds > 0, let json = try? JSONEncoder().encode(value) else { return }
        var command = RedisCommand("SET", key)
        command.append(bytes: Array(json))
        command.append("EX")
        command.append(seconds)
        _ = try? await cache.send(command)
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
        guard admitted <= configuration.maxConcurrentReads else {
            observer?.archiveRead(.busy)
            throw .busy
        }
        let started = ContinuousClock.now
        do {
            let documents = try await mongo.find(collection, filter: filter, sort: sort, limit: limit)
            observer?.mongoRead(latency: .now - started)
            return documents
        } catch {
            observer?.mongoRead(latency: .now - started)
            throw .unavailable(error.message)
        }
    }
}

/// What the archive reports for metrics: every read by where it was answered, and MongoDB's read latency.
public protocol ArchiveObserver: Sendable {
    func archiveRead(_ result: ArchiveReadResult)
    func mongoRead(latency: Duration)
}

public enum ArchiveReadResult: String, Sendable {
    /// Answered from the Redis cache.
    case hit
    /// Read from MongoDB.
    case miss
    /// Known missing (this process asked MongoDB moments ago).
    case negative
    /// Refused: too many MongoDB reads in flight on this instance.
    case busy
}

/// Keys MongoDB just said it does not have, remembered for a moment, at most `capacity` of them (the oldest
/// dropped first): a flood of made-up ids costs MongoDB one read per id and lifetime, and this process a bounded
/// table.
final class NegativeCache: Sendable {
    private struct State {
        var expiries: [String: Int64] = [:]
        var order: [String] = []
        var head = 0
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let lifetimeMilliseconds: Int64

    init(capacity: Int, lifetimeMilliseconds: Int64) {
        precondition(capacity > 0 && lifetimeMilliseconds >= 0, "a negative cache needs a capacity")
        self.capacity = capacity
        self.lifetimeMilliseconds = lifetimeMilliseconds
    }

    private static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1_000) }

    func contains(_ key: String) -> Bool {
        let now = Self.nowMilliseconds
        return state.withLock { state in (state.expiries[key] ?? .min) > now }
    }

    func insert(_ key: String) {
        let expiry = Self.nowMilliseconds + lifetimeMilliseconds
        state.withLock { state in
            if state.expiries.updateValue(expiry, forKey: key) != nil { return }
            state.order.append(key)
            // Beyond the capacity the oldest key goes (its entry may have been refreshed: then it goes early).
            while state.order.count - state.head > capacity {
                state.expiries[state.order[state.head]] = nil
                state.head += 1
            }
            if state.head > capacity {
                state.order.removeFirst(state.head)
                state.head = 0
            }
            assert(state.expiries.count <= capacity, "the negative cache holds at most its capacity")
        }
    }

    var count: Int { state.withLock { $0.expiries.count } }
}
