import Foundation

/// Rebuilds a sale's Redis ledger from MongoDB after Redis lost it: the sale's meta (as the drainer
/// stored it), sold, per-customer counts, orders, idempotency keys and customers' order lists.
///
/// The rebuild is exactly as complete as MongoDB is: orders still in a lost outbox are gone with it,
/// which is why production Redis runs with AOF `appendfsync always` and MongoDB is only the second copy.
/// Leases, the waitlist and rejection counters are not restored: after a rebuild every unsold unit is in
/// the pool and the instances lease afresh (under a fence above any fence seen before).
///
/// Steps (each a ledger script): wipe the sale's keys (refused while the sale has meta, i.e. a live
/// ledger, unless forced); restore orders in chunks in outbox order; write meta last. A rebuild that
/// stops halfway leaves no meta, so running it again starts over cleanly.
public struct LedgerRebuild: Sendable {
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        public var saleID: String
        public var orders = 0
        public var confirmed = 0
        public var sold = 0
        public var pool = 0
        public var status = ""

        public var description: String {
            "sale \(saleID): \(orders) orders restored (\(confirmed) confirmed), sold \(sold), pool \(pool), status \(status)"
        }
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        case liveLedger(status: String)
        case saleNotInMongo
        case malformed(String)
        case redis(RedisError)
        case mongo(MongoError)

        public var description: String {
            switch self {
            case .liveLedger(let status): "the sale has a live ledger in Redis (status \(status)); pass --force to replace it"
            case .saleNotInMongo: "MongoDB has no document for this sale in `sales`"
            case .malformed(let detail): "MongoDB holds a malformed document: \(detail)"
            case .redis(let error): "Redis: \(error)"
            case .mongo(let error): "MongoDB: \(error)"
            }
        }
    }

    static let chunkSize = 200

    public let redis: RedisClient
    public let mongo: MongoClient

    public init(redis: RedisClient, mongo: MongoClient) {
        self.redis = redis
        self.mongo = mongo
    }

    public func rebuild(saleID: String, force: Bool) async throws(Failure) -> Report {
        let saleDocuments: [BSONDocument]
        let orderDocuments: [BSONDocument]
        do {
            saleDocuments = try await mongo.find(OutboxDocuments.sales, filter: ["_id": .string(saleID)], limit: 1)
            orderDocuments = try await mongo.find(OutboxDocuments.orders, filter: ["saleId": .string(saleID)])
        } catch {
            throw .mongo(error)
        }
        guard let sale = saleDocuments.first else { throw .saleNotInMongo }
        guard let metaDocument = sale["ledgerMeta"]?.document, metaDocument["stock"]?.string != nil else {
            throw .malformed("sale \(saleID) has no ledgerMeta.stock")
        }
        // The ledger's order: the outbox entry, then the place within it (a commit batch holds many orders).
        var records: [(position: (Int64, Int64, Int64), record: OrderRecord)] = []
        records.reserveCapacity(orderDocuments.count)
        for document in orderDocuments {
            let record = try Self.record(from: document)
            let entry = StreamEntry(id: document["outboxId"]?.string ?? "0-0", fields: [:]).position
            records.append(((entry.0, entry.1, document["outboxIndex"]?.int64 ?? 0), record))
        }
        records.sort { $0.position < $1.position || ($0.position == $1.position && $0.record.orderID < $1.record.orderID) }
        let meta = metaDocument.fields.compactMap { field in field.value.string.map { (field.key, $0) } }
        let summary = sale["summaryJSON"]?.string
        let fence = (records.map(\.record.fence).max() ?? 0) + 1
        let ordered = records.map(\.record)

        do {
            return try await redis.withConnection { connection throws(RedisError) -> Result<Report, Failure> in
                let keys = LedgerKeys(saleID: saleID).all
                var begin = RedisCommand()
                begin.append(force ? "1" : "0")
                let started = try connection.evaluate(LedgerScripts.restoreBegin, keys: keys, arguments: begin).throwingServerError()
                if started.array?.first?.string == "LIVE" { return .failure(.liveLedger(status: started.array?.last?.string ?? "")) }

                var report = Report(saleID: saleID)
                for chunk in stride(from: 0, to: ordered.count, by: Self.chunkSize) {
                    let slice = ordered[chunk..<min(chunk + Self.chunkSize, ordered.count)]
                    var arguments = RedisCommand()
                    arguments.append(slice.count)
                    for record in slice {
                        arguments.append(record.orderID)
                        arguments.append(record.customerID)
                        arguments.append(record.quantity)
                        arguments.append(record.status.rawValue)
                        arguments.append(bytes: Array((try? JSONEncoder().encode(record)) ?? Data()))
                        arguments.append(record.idempotencyKey)
                    }
                    let reply = try connection.evaluate(LedgerScripts.restoreOrders, keys: keys, arguments: arguments).throwingServerError()
                    guard let elements = reply.array, elements.count == 3 else { throw RedisError(.unexpectedReply, "restore_orders answered \(reply)") }
                    report.confirmed += Int(elements[1].integer ?? 0)
                }
                report.orders = ordered.count

                var finish = RedisCommand()
                finish.append(fence)
                for (field, value) in meta {
                    finish.append(field)
                    finish.append(value)
                }
                let finished = try connection.evaluate(LedgerScripts.restoreFinish, keys: keys, arguments: finish).throwingServerError()
                guard let elements = finished.array, elements.count == 3 else { throw RedisError(.unexpectedReply, "restore_finish answered \(finished)") }
                report.pool = Int(elements[1].integer ?? 0)
                report.sold = Int(elements[2].integer ?? 0)
                report.status = meta.first(where: { $0.0 == "status" })?.1 ?? ""

                // The registries, and the final summary if the sale had closed.
                var registry = RedisCommand("ZADD", LedgerKeys.allSales)
                registry.append(meta.first(where: { $0.0 == "startMs" }).flatMap { Int64($0.1) } ?? 0)
                registry.append(saleID)
                var commands = [registry]
                if let summary {
                    commands.append(RedisCommand("SET", LedgerKeys(saleID: saleID).summary, summary))
                } else {
                    commands.append(RedisCommand("SADD", LedgerKeys.activeSales, saleID))
                }
                for reply in try connection.pipeline(commands) { try reply.throwingServerError() }
                return .success(report)
            }.get()
        } catch let failure as Failure {
            throw failure
        } catch let error as RedisError {
            throw .redis(error)
        } catch {
            throw .malformed("\(error)")
        }
    }

    /// The ledger's order record from its MongoDB document (the fields the drainer wrote).
    static func record(from document: BSONDocument) throws(Failure) -> OrderRecord {
        guard let id = document["_id"]?.string, let customer = document["customerId"]?.string,
              let quantity = document["quantity"]?.int64, let created = document["createdAt"]?.int64,
              let status = document["status"]?.string.flatMap(OrderRecord.Status.init(rawValue:)) else {
            throw .malformed("order \(document["_id"].map { "\($0)" } ?? "?") lacks _id, customerId, quantity, createdAt or status")
        }
        return OrderRecord(
            orderID: id, customerID: customer, quantity: Int(quantity), createdAtMilliseconds: created, status: status,
            idempotencyKey: document["idempotencyKey"]?.string ?? "", delivery: document["delivery"]?.string ?? "",
            shardID: document["shard"]?.string ?? "", fence: document["fence"]?.int64 ?? 0,
            instanceID: document["instance"]?.string ?? "", source: document["source"]?.string ?? "bucket",
            cancelledAtMilliseconds: status == .cancelled ? document["cancelledAt"]?.int64 : nil
        )
    }
}
