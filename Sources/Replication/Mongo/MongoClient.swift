import CMongoc
import Foundation
import Logging
import Synchronization

/// One operation of a bulk write. Every operation names its document by `_id`, so replaying a batch
/// after an unknown outcome (a reply lost to a dropped connection) changes nothing.
public enum MongoWrite: Sendable, Hashable {
    /// Inserts the document, or replaces the whole document with the same `_id`.
    case replace(BSONDocument)
    /// Applies update operators (`$set`, `$setOnInsert`, ...) to the document with `_id`, inserting it if absent.
    case upsert(id: BSONValue, update: BSONDocument)
}

/// What a bulk write did. Documents listed in `writeErrors` were refused; all others were applied.
public struct MongoBulkResult: Sendable {
    public var matched = 0
    public var modified = 0
    public var upserted = 0
    public var writeErrors: [MongoWriteError] = []
}

/// A MongoDB client over libmongoc: a `mongoc_client_pool_t` built from a MongoDB connection string, and
/// dedicated threads that make every libmongoc call (each blocks on the network), so no call runs on the
/// Swift cooperative pool. Callers' tasks are suspended, never blocked.
///
/// The URI is libmongoc's: replica sets (`replicaSet=`), TLS (`tls=true&tlsCAFile=...`), authentication
/// and timeouts work as libmongoc documents them. When the URI sets no timeouts, server selection waits
/// at most 5 s and a socket 10 s, so a stalled server cannot hold a worker thread for long.
public final class MongoClient: Sendable {
    private typealias Job = @Sendable (OpaquePointer) -> Void

    public let databaseName: String
    /// The URI with any password removed, for logs.
    public let redactedURI: String
    private let pool: PoolHandle
    private let threads: [BatchingThread<Job>]
    private let nextThread = Atomic<Int>(0)

    /// - Parameters:
    ///   - uri: a `mongodb://` or `mongodb+srv://` connection string; the database is its path, or `flashsale`.
    ///   - database: overrides the URI's database.
    ///   - threads: worker threads (each holds at most one pooled client at a time).
    public init(uri: String, database: String? = nil, appName: String = "flashsale", threads: Int = 2, queueCapacity: Int = 1_024) throws(MongoError) {
        precondition(threads > 0, "threads must be positive")
        MongoLibrary.initializeOnce()
        var error = bson_error_t()
        guard let parsed = mongoc_uri_new_with_error(uri, &error) else { throw MongoError(error) }
        defer { mongoc_uri_destroy(parsed) }
        if !mongoc_uri_has_option(parsed, MONGOC_URI_SERVERSELECTIONTIMEOUTMS) {
            _ = mongoc_uri_set_option_as_int32(parsed, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5_000)
        }
        if !mongoc_uri_has_option(parsed, MONGOC_URI_SOCKETTIMEOUTMS) {
            _ = mongoc_uri_set_option_as_int32(parsed, MONGOC_URI_SOCKETTIMEOUTMS, 10_000)
        }
        if !mongoc_uri_has_option(parsed, MONGOC_URI_CONNECTTIMEOUTMS) {
            _ = mongoc_uri_set_option_as_int32(parsed, MONGOC_URI_CONNECTTIMEOUTMS, 2_000)
        }
        if let database {
            databaseName = database
        } else if let database = mongoc_uri_get_database(parsed), database.pointee != 0 {
            databaseName = String(cString: database)
        } else {
            databaseName = "flashsale"
        }
        redactedURI = Self.redact(uri)
        guard let pool = mongoc_client_pool_new_with_error(parsed, &error) else { throw MongoError(error) }
        mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2)
        _ = mongoc_client_pool_set_appname(pool, appName)
        let handle = PoolHandle(pool)
        self.pool = handle
        self.threads = (0..<threads).map { index in
            BatchingThread<Job>(name: "mongo-\(index)", queueCapacity: queueCapacity, maxBatchItems: 1) { jobs in
                for job in jobs {
                    let client = mongoc_client_pool_pop(handle.pool)!
                    job(client)
                    mongoc_client_pool_push(handle.pool, client)
                }
            }
        }
    }

    /// Runs `body` with a pooled `mongoc_client_t` on one of the client's threads.
    private func run<Value: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws(MongoError) -> Value) async throws(MongoError) -> Value {
        let thread = threads[(nextThread.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max) % threads.count]
        let outcome: Result<Value, MongoError> = await withCheckedContinuation { continuation in
            let job: Job = { client in
                do throws(MongoError) {
                    continuation.resume(returning: .success(try body(client)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            switch thread.submit(job) {
            case .accepted: break
            case .queueFull:
                continuation.resume(returning: .failure(MongoError(kind: .transient, code: -1, message: "MongoDB client queue is full")))
            case .stopped:
                continuation.resume(returning: .failure(MongoError(kind: .transient, code: -2, message: "MongoDB client is shut down")))
            }
        }
        return try outcome.get()
    }

    /// `{ping: 1}`: succeeds when a server is selectable and answers.
    public func ping() async throws(MongoError) {
        _ = try await command(["ping": .int32(1)])
    }

    /// Runs a database command (a write command: it goes to the primary) and answers its reply.
    public func command(_ command: BSONDocument) async throws(MongoError) -> BSONDocument {
        let database = databaseName
        return try await run { client throws(MongoError) in
            var error = bson_error_t()
            let (succeeded, document) = withReplyDocument { reply in
                command.withBSON { mongoc_client_write_command_with_opts(client, database, $0, nil, reply, &error) }
            }
            guard succeeded else { throw MongoError(error, reply: document) }
            return document
        }
    }

    /// Writes `operations` to `collection` in one unordered bulk write with write concern majority.
    ///
    /// Throws when the batch as a whole failed (nothing or an unknown part was applied: retry all of it);
    /// answers normally when the server applied the batch, listing any single documents it refused.
    public func bulkWrite(_ collection: String, _ operations: [MongoWrite], writeConcernTimeoutMilliseconds: Int32 = 10_000) async throws(MongoError) -> MongoBulkResult {
        guard !operations.isEmpty else { return MongoBulkResult() }
        let database = databaseName
        return try await run { client throws(MongoError) in
            let handle = mongoc_client_get_collection(client, database, collection)!
            defer { mongoc_collection_destroy(handle) }
            let options: BSONDocument = [
                "ordered": false,
                "writeConcern": .document(["w": "majority", "wtimeout": .int32(writeConcernTimeoutMilliseconds)]),
            ]
            let bulk = options.withBSON { mongoc_collection_create_bulk_operation_with_opts(handle, $0) }!
            defer { mongoc_bulk_operation_destroy(bulk) }
            let upsert: BSONDocument = ["upsert": true]
            var error = bson_error_t()
            for operation in operations {
                let added: Bool
                switch operation {
                case .replace(let document):
                    let selector: BSONDocument = ["_id": document["_id"] ?? .null]
                    added = selector.withBSON { selector in
                        document.withBSON { document in
                            upsert.withBSON { mongoc_bulk_operation_replace_one_with_opts(bulk, selector, document, $0, &error) }
                        }
                    }
                case .upsert(let id, let update):
                    let selector: BSONDocument = ["_id": id]
                    added = selector.withBSON { selector in
                        update.withBSON { update in
                            upsert.withBSON { mongoc_bulk_operation_update_one_with_opts(bulk, selector, update, $0, &error) }
                        }
                    }
                }
                guard added else {
                    // libmongoc refused the operation itself (a malformed document): sending it again cannot help.
                    let refused = MongoError(error)
                    throw MongoError(kind: .permanent, domain: refused.domain, code: refused.code, message: refused.message)
                }
            }
            let (succeeded, document) = withReplyDocument { reply in mongoc_bulk_operation_execute(bulk, reply, &error) != 0 }
            var result = MongoBulkResult()
            result.matched = Int(document["nMatched"]?.int64 ?? 0)
            result.modified = Int(document["nModified"]?.int64 ?? 0)
            result.upserted = Int(document["nUpserted"]?.int64 ?? 0)
            result.writeErrors = (document["writeErrors"]?.array ?? []).compactMap { entry -> MongoWriteError? in
                guard let entry = entry.document, let index = entry["index"]?.int64 else { return nil }
                return MongoWriteError(index: Int(index), code: Int32(truncatingIfNeeded: entry["code"]?.int64 ?? 0),
                                       message: entry["errmsg"]?.string ?? "")
            }
            // A write concern error means the writes may not survive a failover: the batch is not accepted.
            if let concern = document["writeConcernErrors"]?.array?.first?.document {
                throw MongoError(kind: .transient, code: Int32(truncatingIfNeeded: concern["code"]?.int64 ?? 64),
                                 message: concern["errmsg"]?.string ?? "write concern not satisfied")
            }
            if !succeeded && result.writeErrors.isEmpty { throw MongoError(error, reply: document) }
            return result
        }
    }

    /// The documents of `collection` matching `filter`, in `sort` order, at most `limit` (all when nil).
    public func find(_ collection: String, filter: BSONDocument = [:], sort: BSONDocument? = nil, limit: Int? = nil) async throws(MongoError) -> [BSONDocument] {
        let database = databaseName
        return try await run { client throws(MongoError) in
            let handle = mongoc_client_get_collection(client, database, collection)!
            defer { mongoc_collection_destroy(handle) }
            var options = BSONDocument()
            if let sort { options["sort"] = .document(sort) }
            if let limit { options["limit"] = .int64(Int64(limit)) }
            let cursor = filter.withBSON { filter in
                options.withBSON { mongoc_collection_find_with_opts(handle, filter, $0, nil) }
            }!
            defer { mongoc_cursor_destroy(cursor) }
            var documents: [BSONDocument] = []
            var next: OpaquePointer?
            while mongoc_cursor_next(cursor, &next), let current = next {
                documents.append(BSONDocument(bson: current))
            }
            var error = bson_error_t()
            var replyPointer: OpaquePointer?
            if mongoc_cursor_error_document(cursor, &error, &replyPointer) {
                throw MongoError(error, reply: replyPointer.map { BSONDocument(bson: $0) })
            }
            return documents
        }
    }

    /// Creates indexes (`createIndexes`); creating an index that exists with the same keys is a no-op.
    public func createIndexes(_ collection: String, _ indexes: [MongoIndex]) async throws(MongoError) {
        guard !indexes.isEmpty else { return }
        _ = try await command([
            "createIndexes": .string(collection),
            "indexes": .array(indexes.map { index in
                var specification: BSONDocument = ["key": .document(index.keys), "name": .string(index.name)]
                if index.unique { specification["unique"] = true }
                return .document(specification)
            }),
        ])
    }

    /// Stops intake; queued operations finish first. Call once, before dropping the client.
    public func shutdown() {
        for thread in threads { thread.shutdown() }
    }

    private static func redact(_ uri: String) -> String {
        guard let scheme = uri.range(of: "://"), let at = uri[scheme.upperBound...].firstIndex(of: "@") else { return uri }
        return String(uri[..<scheme.upperBound]) + "***" + String(uri[at...])
    }
}

/// An index specification for ``MongoClient/createIndexes(_:_:)``.
public struct MongoIndex: Sendable {
    public let name: String
    public let keys: BSONDocument
    public let unique: Bool

    public init(name: String, keys: BSONDocument, unique: Bool = false) {
        self.name = name
        self.keys = keys
        self.unique = unique
    }
}

/// Runs `body` with an uninitialized reply `bson_t` (libmongoc always initializes it), then copies the
/// reply out and destroys it. The storage is 128-byte aligned, as libbson declares `bson_t`.
private func withReplyDocument<Value>(_ body: (OpaquePointer) -> Value) -> (Value, BSONDocument) {
    var storage: UnsafeMutableRawPointer?
    // sizeof(bson_t) is 128 in libbson 1.x.
    precondition(posix_memalign(&storage, 128, 128) == 0, "out of memory")
    defer { free(storage) }
    let reply = OpaquePointer(storage!)
    let value = body(reply)
    let document = BSONDocument(bson: reply)
    bson_destroy(reply)
    return (value, document)
}

/// `mongoc_init` once per process (libmongoc requires it before any other call), with libmongoc's own
/// log (on stderr by default, chatty at DEBUG) routed to a swift-log logger, warnings and worse only.
enum MongoLibrary {
    private static let initialized: Void = {
        mongoc_init()
        mongoc_log_set_handler({ level, domain, message, _ in
            guard level.rawValue <= MONGOC_LOG_LEVEL_WARNING.rawValue else { return }
            let text = message.map { String(cString: $0) } ?? ""
            let source = domain.map { String(cString: $0) } ?? "mongoc"
            MongoLibrary.logger.log(level: level.rawValue <= MONGOC_LOG_LEVEL_CRITICAL.rawValue ? .error : .warning,
                                    "\(text)", metadata: ["component": "\(source)"])
        }, nil)
    }()
    static let logger = Logger(label: "flashsale.mongoc")
    static func initializeOnce() { _ = initialized }
}

/// Owns the `mongoc_client_pool_t` (thread-safe by libmongoc's contract) and destroys it with the client.
private final class PoolHandle: @unchecked Sendable {
    let pool: OpaquePointer
    init(_ pool: OpaquePointer) { self.pool = pool }
    deinit { mongoc_client_pool_destroy(pool) }
}
