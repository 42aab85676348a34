/// Whether the ledger's Redis keeps an acknowledged write across a crash: `appendonly yes` with
/// `appendfsync always` (ARCHITECTURE.md, "Leases and fencing"). Anything weaker can lose confirmed orders
/// in a crash, as the chaos suite's control scenario shows.
public enum LedgerDurability: Sendable, Hashable, CustomStringConvertible {
    case durable
    /// The server answered with a weaker setting (the reason names it).
    case notDurable(String)
    /// The server would not say (managed Redis often refuses `CONFIG GET`), or could not be asked.
    case unknown(String)

    public var description: String {
        switch self {
        case .durable: "durable (appendonly yes, appendfsync always)"
        case .notDurable(let reason): "not durable: \(reason)"
        case .unknown(let reason): "unknown: \(reason)"
        }
    }

    /// 1 durable, 0 not durable, -1 unknown (the `flashsale_ledger_durable` gauge).
    public var gaugeValue: Double {
        switch self {
        case .durable: 1
        case .notDurable: 0
        case .unknown: -1
        }
    }

    /// Reads the two settings from `CONFIG GET` replies (flat name/value arrays).
    static func judge(appendOnly: String?, appendFsync: String?) -> LedgerDurability {
        guard let appendOnly, let appendFsync else { return .unknown("CONFIG GET did not name appendonly and appendfsync") }
        if appendOnly.lowercased() != "yes" { return .notDurable("appendonly \(appendOnly)") }
        if appendFsync.lowercased() != "always" { return .notDurable("appendfsync \(appendFsync)") }
        return .durable
    }
}

extension Ledger {
    /// Asks the server for its persistence settings. Never throws: a refusal or an error is `unknown`.
    ///
    /// On Redis Cluster every master is asked (each holds its sales' orders alone): durable only when every one is;
    /// otherwise the first weaker master's answer, or the first that would not say, named by its address.
    public func durability() -> LedgerDurability {
        do throws(RedisError) {
            if let masters = try connection.eachClusterMaster({ master in Ledger(connection: master).durability() }) {
                let judged = masters.map { entry -> (String, LedgerDurability) in
                    switch entry.result {
                    case .success(let found): ("\(entry.master)", found)
                    case .failure(let error): ("\(entry.master)", .unknown("\(error.code): \(error.message)"))
                    }
                }
                if let (master, weak) = judged.first(where: { if case .notDurable = $0.1 { true } else { false } }),
                   case .notDurable(let reason) = weak {
                    return .notDurable("master \(master): \(reason)")
                }
                if let (master, unknown) = judged.first(where: { if case .unknown = $0.1 { true } else { false } }),
                   case .unknown(let reason) = unknown {
                    return .unknown("master \(master): \(reason)")
                }
                assert(judged.allSatisfy { $0.1 == .durable }, "durable, not durable or unknown")
                return .durable
            }
            let replies = try connection.pipeline([RedisCommand("CONFIG", "GET", "appendonly"), RedisCommand("CONFIG", "GET", "appendfsync")])
            var values: [String: String] = [:]
            for reply in replies {
                if let message = reply.errorMessage { return .unknown("CONFIG GET refused: \(message)") }
                values.merge(Self.pairs(reply.array ?? [])) { first, _ in first }
            }
            return LedgerDurability.judge(appendOnly: values["appendonly"], appendFsync: values["appendfsync"])
        } catch {
            return .unknown("\(error.code): \(error.message)")
        }
    }
}
