import Foundation
import ReservationEngine

/// Writes a sale's orders, cancellations and sale document from the Redis ledger to MongoDB again: the step after
/// MongoDB was restored from a dump older than the sale's last orders (those no longer in the outbox). Idempotent
/// by `_id`: an order MongoDB has keeps its facts (`$setOnInsert`) and takes the ledger's status, which is the
/// truth while the sale's keys live. Ends with a count check: every order of the ledger is in MongoDB.
public struct LedgerReexport: Sendable {
    public enum Failure: Error, Sendable, CustomStringConvertible {
        case saleNotInLedger
        case redis(RedisError)
        case mongo(MongoError)
        case refused([MongoWriteError])
        case countMismatch(ledger: Int, mongo: Int)

        public var description: String {
            switch self {
            case .saleNotInLedger: "the sale has no ledger in Redis (retired or never created): nothing to re-export"
            case .redis(let error): "Redis: \(error.message)"
            case .mongo(let error): "MongoDB: \(error.message)"
            case .refused(let errors): "MongoDB refused \(errors.count) documents: \(errors.prefix(3).map { "\($0)" }.joined(separator: "; "))"
            case .countMismatch(let ledger, let mongo): "the ledger holds \(ledger) orders of the sale, MongoDB \(mongo) after the re-export"
            }
        }
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var saleID: String
        public var orders = 0
        public var cancelled = 0
        public var inserted = 0
        public var inMongo = 0
        public var description: String {
            "sale \(saleID): \(orders) orders re-exported (\(cancelled) cancelled or failed, \(inserted) MongoDB lacked); MongoDB now holds \(inMongo)"
        }
    }

    /// Orders per bulk write and per `HSCAN` page; the scan stops after `maxScanPages` pages (a sale holds at
    /// most 10,000,000 orders: 10,000 pages of 1,000).
    static let batch = 1_000
    static let maxScanPages = 20_000

    let redis: RedisClient
    let mongo: MongoClient

    public init(redis: RedisClient, mongo: MongoClient) {
        self.redis = redis
        self.mongo = mongo
    }

    public func reexport(saleID: String) async throws(Failure) -> Report {
        let keys = LedgerKeys(saleID: saleID)
        let meta: [String: String]
        let summary: String?
        do {
            let replies = try await redis.withConnection { connection throws(RedisError) in
                try connection.pipeline([RedisCommand("HGETALL", keys.meta), RedisCommand("GET", keys.summary)])
            }
            meta = Ledger.pairs(try replies[0].throwingServerError().array ?? [])
            summary = try replies[1].throwingServerError().string
        } catch {
            throw .redis(error)
        }
        guard !meta.isEmpty else { throw .saleNotInLedger }

        var report = Report(saleID: saleID)
        var cursor = "0"
        var pages = 0
        repeat {
            let page: (next: String, records: [OrderRecord])
            let from = cursor
            do {
                page = try await redis.withConnection { connection throws(RedisError) in
                    var scan = RedisCommand("HSCAN", keys.orders, from, "COUNT")
                    scan.append(Self.batch)
                    let reply = try connection.send(scan).throwingServerError()
                    guard let parts = reply.array, parts.count == 2, let next = parts[0].string else {
                        throw RedisError(.unexpectedReply, "HSCAN answered \(reply)")
                    }
                    var records: [OrderRecord] = []
                    let flat = parts[1].array ?? []
                    for index in stride(from: 1, to: flat.count, by: 2) {
                        guard case .bulk(let json) = flat[index] else { continue }
                        records.append(try OrderRecord(ledgerJSON: json))
                    }
                    return (next, records)
                }
            } catch {
                throw .redis(error)
            }
            cursor = page.next
            pages += 1
            if !page.records.isEmpty {
                let result: MongoBulkResult
                do {
                    result = try await mongo.bulkWrite(OutboxDocuments.orders, page.records.map { OutboxDocuments.reexportWrite(saleID: saleID, record: $0) })
                } catch {
                    throw .mongo(error)
                }
                guard result.writeErrors.isEmpty else { throw .refused(result.writeErrors) }
                report.orders += page.records.count
                report.cancelled += page.records.filter { $0.status != .confirmed }.count
                report.inserted += result.upserted
            }
        } while cursor != "0" && pages < Self.maxScanPages
        precondition(cursor == "0", "HSCAN of one sale's orders did not finish within \(Self.maxScanPages) pages")

        do {
            _ = try await mongo.bulkWrite(OutboxDocuments.sales, [OutboxDocuments.saleWrite(saleID: saleID, meta: meta, summaryJSON: summary)])
            let counted = try await mongo.command(["count": .string(OutboxDocuments.orders), "query": .document(["saleId": .string(saleID)])])
            report.inMongo = Int(counted["n"]?.int64 ?? -1)
        } catch {
            throw .mongo(error)
        }
        guard report.inMongo == report.orders else { throw .countMismatch(ledger: report.orders, mongo: report.inMongo) }
        return report
    }
}
