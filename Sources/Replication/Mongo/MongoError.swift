import CMongoc

/// A MongoDB failure, classified for the caller: a **transient** error (the network, an election, a
/// timeout, a write concern not yet satisfied) may succeed when retried unchanged; a **permanent** one
/// (validation, a duplicate key with different content, a malformed request) will fail the same way again.
public struct MongoError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case transient
        case permanent
    }

    public let kind: Kind
    /// libmongoc's error domain (`mongoc_error_domain_t`), 0 when the error came from a reply document.
    public let domain: UInt32
    /// The server's error code (with error API version 2) or libmongoc's own code.
    public let code: Int32
    public let message: String
    public let labels: [String]

    public init(kind: Kind, domain: UInt32 = 0, code: Int32, message: String, labels: [String] = []) {
        self.kind = kind
        self.domain = domain
        self.code = code
        self.message = message
        self.labels = labels
    }

    public var isTransient: Bool { kind == .transient }

    /// The server could not be reached at all (network, server selection, the connection pool): every
    /// command would fail the same way now, whatever it is about.
    public var isUnreachable: Bool {
        switch mongoc_error_domain_t(domain) {
        case MONGOC_ERROR_STREAM, MONGOC_ERROR_SERVER_SELECTION, MONGOC_ERROR_POOL: true
        case MONGOC_ERROR_CLIENT: code == Int32(MONGOC_ERROR_CLIENT_NOT_READY.rawValue)
        default: false
        }
    }

    public var description: String { "MongoDB \(kind.rawValue) error \(code): \(message)" }

    /// Server codes that a retry can get past: elections, shutdowns, timeouts, network trouble, an interrupted
    /// operation, a shard's routing metadata being refreshed. None of them says anything about the document, and
    /// the drainer compensates (fails a customer's order) on any code not listed, so a code that only says
    /// "not now" belongs here.
    ///
    /// Compared with the drivers (libmongoc 1.23 `mongoc-error.c`, and the retryable-writes and retryable-reads
    /// specifications that pymongo, the Go and Node drivers follow): their retryable set is 6, 7, 89, 91, 189, 262,
    /// 9001, 10107, 11600, 11602, 13435, 13436 (writes; reads add 134), plus the `RetryableWriteError` label;
    /// every one of those is here. The drivers retry those once, immediately; this list also holds what is worth
    /// retrying later with backoff: 50, 64 and 112 (the transactions specification's unknown-commit codes and a
    /// write conflict), 133, 11601, and the stale-routing codes of a sharded cluster, 63, 150 and 13388 (mongos
    /// refreshes and retries these itself, and reports them when its own retries ran out).
    static let transientServerCodes: Set<Int32> = [
        6,      // HostUnreachable
        7,      // HostNotFound
        50,     // MaxTimeMSExpired
        63,     // StaleShardVersion
        64,     // WriteConcernFailed (wtimeout)
        89,     // NetworkTimeout
        91,     // ShutdownInProgress
        112,    // WriteConflict
        133,    // FailedToSatisfyReadPreference
        134,    // ReadConcernMajorityNotAvailableYet
        150,    // StaleEpoch
        189,    // PrimarySteppedDown
        262,    // ExceededTimeLimit
        9001,   // SocketException
        10058,  // LegacyNotPrimary
        10107,  // NotWritablePrimary
        11600,  // InterruptedAtShutdown
        11601,  // Interrupted
        11602,  // InterruptedDueToReplStateChange
        13388,  // StaleConfig
        13435,  // NotPrimaryNoSecondaryOk
        13436,  // NotPrimaryOrSecondary
    ]

    /// Classifies a server error code plus its error labels.
    static func kind(serverCode code: Int32, labels: [String]) -> Kind {
        if transientServerCodes.contains(code) || labels.contains("RetryableWriteError")
            || labels.contains("TransientTransactionError") || labels.contains("NetworkError") {
            return .transient
        }
        return .permanent
    }

    /// Classifies a libmongoc `bson_error_t` and the reply that came with it (if any).
    init(_ error: bson_error_t, reply: BSONDocument? = nil) {
        let message = withUnsafeBytes(of: error.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let labels = reply?["errorLabels"]?.array?.compactMap(\.string) ?? []
        let code = Int32(truncatingIfNeeded: error.code)
        let kind: Kind
        switch mongoc_error_domain_t(error.domain) {
        case MONGOC_ERROR_STREAM, MONGOC_ERROR_SERVER_SELECTION, MONGOC_ERROR_WRITE_CONCERN, MONGOC_ERROR_POOL:
            kind = .transient
        case MONGOC_ERROR_CLIENT:
            // Not ready / not yet authenticated come and go with the server; the rest is misuse.
            kind = error.code == MONGOC_ERROR_CLIENT_NOT_READY.rawValue || error.code == MONGOC_ERROR_CLIENT_AUTHENTICATE.rawValue
                ? .transient : .permanent
        case MONGOC_ERROR_SERVER, MONGOC_ERROR_COMMAND, MONGOC_ERROR_QUERY, MONGOC_ERROR_COLLECTION:
            kind = Self.kind(serverCode: code, labels: labels)
        default:
            kind = .permanent
        }
        self.init(kind: kind, domain: error.domain, code: code, message: message, labels: labels)
    }
}

/// One document of a bulk write that the server refused while it applied the others (`ordered: false`).
public struct MongoWriteError: Sendable, Hashable {
    /// The position of the refused operation in the batch.
    public let index: Int
    public let code: Int32
    public let message: String

    public var isTransient: Bool { MongoError.kind(serverCode: code, labels: []) == .transient }
}
