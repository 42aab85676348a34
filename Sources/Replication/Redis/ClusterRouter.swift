import Foundation

/// The routing half of a ``RedisConnection`` to a Redis Cluster: the slot map, one plain connection per
/// master, and the redirections, each bounded.
///
/// - A keyed command goes to the master that owns its key's slot (``ClusterSlots/routingSlot(of:)``); a
///   command without a key goes to the node of the command before it (`WAIT` after a commit, `MULTI` and
///   `EXEC` after `WATCH`), or to the first master.
/// - `MOVED` (the slot has a new owner: a reshard or a failover) records the owner, retries there and
///   reads the whole map again before the next command.
/// - `ASK` (the slot is migrating and this key is on the target already) retries once on the target after
///   `ASKING`.
/// - `TRYAGAIN` (a script or multi-key command whose keys are split between source and target while the
///   slot migrates) waits and retries, for at most ``tryAgainBudgetMilliseconds``; then the command fails
///   with ``RedisError/Code/clusterUnavailable`` (nothing was applied).
/// - A lost connection keeps today's meaning (outcome unknown) and makes the next command read the map
///   again, which follows a failover once the cluster promoted a replica.
///
/// Owned by the thread of its ``RedisConnection``, like the connection itself.
final class ClusterRouter {
    let configuration: RedisConfiguration
    private var connections: [RedisConfiguration.Endpoint: RedisConnection] = [:]
    /// The master that owns each slot, as an index into ``masters`` (-1: nobody, per the last map read).
    private var owners = [Int16](repeating: -1, count: ClusterSlots.count)
    private var masters: [RedisConfiguration.Endpoint] = []
    private var mapIsStale = true
    /// The node of the last command: a command without a key goes there.
    private var current: RedisConfiguration.Endpoint?
    /// How many times the slot map was read (tests and logs).
    private(set) var mapReads = 0
    /// Nodes whose last command failed (refused, timed out, lost), and when: the slot map is asked of the others
    /// first, so that a node that stalls costs a command timeout once, not again at every map read. A node leaves
    /// the list when it answers; bounded by the nodes known (``connection(to:)``).
    private var failedNodes: [RedisConfiguration.Endpoint: ContinuousClock.Instant] = [:]

    /// Redirections (`MOVED`, `ASK`) followed for one command before it fails.
    static let maxRedirects = 5
    /// How long one command keeps retrying `TRYAGAIN`, and the pause between tries.
    static let tryAgainBudgetMilliseconds = 2_000
    static let tryAgainPauseMicroseconds: UInt32 = 10_000

    init(configuration: RedisConfiguration) throws(RedisError) {
        precondition(!configuration.clusterNodes.isEmpty, "a cluster router needs seed nodes")
        guard configuration.sentinels.isEmpty else {
            throw RedisError(.invalidConfiguration, "Redis Cluster and Sentinels are alternatives: set one of them")
        }
        guard configuration.database == 0 else {
            throw RedisError(.invalidConfiguration, "Redis Cluster has database 0 only (got \(configuration.database))")
        }
        self.configuration = configuration
    }

    var isConnected: Bool { connections.values.contains { $0.isConnected } }
    var endpoint: RedisConfiguration.Endpoint { current ?? masters.first ?? configuration.clusterNodes[0] }
    /// The masters of the last map read.
    var knownMasters: [RedisConfiguration.Endpoint] { masters }
    /// Each slot's master in the last map read, as an index into ``knownMasters`` (-1: nobody).
    var slotOwners: [Int16] { owners }

    /// The master that owned `slot` in the last map read, without reading it again (nil when none did).
    func lastKnownOwner(of slot: Int) -> RedisConfiguration.Endpoint? {
        precondition((0..<ClusterSlots.count).contains(slot), "slot \(slot) is outside the key space")
        let index = Int(owners[slot])
        return index >= 0 && index < masters.count ? masters[index] : nil
    }

    /// The master that owns `slot`, reading the map first when it is stale.
    func owner(of slot: Int) throws(RedisError) -> RedisConfiguration.Endpoint {
        precondition((0..<ClusterSlots.count).contains(slot), "slot \(slot) is outside the key space")
        if mapIsStale { try readMap() }
        let index = Int(owners[slot])
        guard index >= 0 else {
            mapIsStale = true
            throw RedisError(.clusterUnavailable, "no master serves slot \(slot) (the cluster map has a gap)")
        }
        return masters[index]
    }

    func close() {
        for connection in connections.values { connection.close() }
        mapIsStale = true
    }

    // MARK: Commands

    func send(_ command: RedisCommand) throws(RedisError) -> RedisReply {
        try route(slot: ClusterSlots.routingSlot(of: command)) { connection throws(RedisError) in
            try connection.send(command)
        } asking: { connection throws(RedisError) in
            let replies = try connection.pipeline([RedisCommand("ASKING"), command])
            try replies[0].throwingServerError()
            return replies[1]
        }
    }

    func evaluate(_ script: RedisScript, keys: [String], arguments: RedisCommand) throws(RedisError) -> RedisReply {
        try route(slot: keys.first.map(ClusterSlots.slot(of:))) { connection throws(RedisError) in
            try connection.evaluate(script, keys: keys, arguments: arguments)
        } asking: { connection throws(RedisError) in
            // Loaded first: `ASKING` holds for the one command after it, which must be the script.
            try connection.ensureLoaded(script)
            _ = try connection.send(RedisCommand("ASKING")).throwingServerError()
            return try connection.evaluate(script, keys: keys, arguments: arguments)
        }
    }

    /// Sends each node its commands as one pipeline, in order; a command without a key goes with the one
    /// before it. A command answered with a redirection is sent again on its own, through ``send(_:)``,
    /// unless the pipeline holds a transaction (`MULTI`): its replies then stand, and the caller sees the
    /// error (the transaction did not apply).
    func pipeline(_ commands: [RedisCommand]) throws(RedisError) -> [RedisReply] {
        var targets: [RedisConfiguration.Endpoint] = []
        targets.reserveCapacity(commands.count)
        var previous = current
        for command in commands {
            let target = try target(slot: ClusterSlots.routingSlot(of: command), after: previous)
            targets.append(target)
            previous = target
        }
        var replies = [RedisReply](repeating: .null, count: commands.count)
        var order: [RedisConfiguration.Endpoint] = []
        for target in targets where !order.contains(target) { order.append(target) }
        for target in order {
            let indices = targets.indices.filter { targets[$0] == target }
            let answered: [RedisReply]
            do throws(RedisError) {
                answered = try connection(to: target).pipeline(indices.map { commands[$0] })
            } catch {
                mapIsStale = true
                failedNodes[target] = .now
                throw error
            }
            if !failedNodes.isEmpty { failedNodes[target] = nil }
            for (index, reply) in zip(indices, answered) { replies[index] = reply }
        }
        current = previous
        let transaction = commands.contains { $0.arguments.first.map { String(decoding: $0, as: UTF8.self).uppercased() } == "MULTI" }
        for index in replies.indices where !transaction {
            if let message = replies[index].errorMessage, Self.redirection(message) != nil {
                mapIsStale = true
                replies[index] = try send(commands[index])
            }
        }
        return replies
    }

    /// Loads `script` on every master (start-up and readiness: every node can run the ledger).
    func ensureLoaded(_ script: RedisScript) throws(RedisError) {
        if mapIsStale { try readMap() }
        do throws(RedisError) {
            for master in masters { try connection(to: master).ensureLoaded(script) }
        } catch {
            mapIsStale = true  // a master that cannot be reached may have been replaced
            throw error
        }
    }

    /// `body` on each master of the slot map (read first when stale), one after the other; each master with its
    /// result. A master that fails makes the map be read again before the next command (it may have been
    /// replaced). Throws when no map can be read.
    func eachMaster<Value>(_ body: (RedisConnection) throws(RedisError) -> Value) throws(RedisError) -> [(master: RedisConfiguration.Endpoint, result: Result<Value, RedisError>)] {
        if mapIsStale { try readMap() }
        return masters.map { master in
            do throws(RedisError) {
                let value = try body(try connection(to: master))
                failedNodes[master] = nil
                return (master, .success(value))
            } catch {
                mapIsStale = true
                failedNodes[master] = .now
                return (master, .failure(error))
            }
        }
    }

    func load(_ script: RedisScript) throws(RedisError) -> String {
        if mapIsStale { try readMap() }
        do throws(RedisError) {
            for master in masters { try connection(to: master).load(script) }
        } catch {
            mapIsStale = true
            throw error
        }
        return script.digest
    }

    // MARK: Routing

    private func route(
        slot: Int?,
        _ perform: (RedisConnection) throws(RedisError) -> RedisReply,
        asking: (RedisConnection) throws(RedisError) -> RedisReply
    ) throws(RedisError) -> RedisReply {
        var target = try target(slot: slot, after: current)
        var askingTarget = false
        var redirects = 0
        let deadline = ContinuousClock.now + .milliseconds(Self.tryAgainBudgetMilliseconds)
        while true {
            let reply: RedisReply
            do throws(RedisError) {
                let connection = try connection(to: target)
                reply = askingTarget ? try asking(connection) : try perform(connection)
            } catch {
                // Outcome unknown, or the node is gone (not even connecting): the map is read again before the next command.
                mapIsStale = true
                failedNodes[target] = .now
                throw error
            }
            if !failedNodes.isEmpty { failedNodes[target] = nil }
            current = target
            askingTarget = false
            guard let message = reply.errorMessage, let redirection = Self.redirection(message) else {
                if let message = reply.errorMessage, message.hasPrefix("CLUSTERDOWN") {
                    // The slot has no master (a failover in progress): refused, nothing applied.
                    mapIsStale = true
                    throw RedisError(.clusterUnavailable, message)
                }
                if let message = reply.errorMessage, RedisConnection.isDemotion(message) { mapIsStale = true }
                return reply
            }
            switch redirection {
            case .moved(let movedSlot, let owner):
                mapIsStale = true
                record(owner, for: movedSlot)
                redirects += 1
                target = owner
            case .ask(_, let owner):
                redirects += 1
                target = owner
                askingTarget = true
            case .tryAgain:
                // Bounded by the deadline; ASK and TRYAGAIN may alternate while the keys move, so the count of
                // redirections starts again.
                redirects = 0
                guard ContinuousClock.now < deadline else {
                    throw RedisError(.clusterUnavailable, "slot \(slot.map(String.init) ?? "?") is migrating: TRYAGAIN for \(Self.tryAgainBudgetMilliseconds) ms (nothing applied)")
                }
                usleep(Self.tryAgainPauseMicroseconds)
                if let slot { target = try owner(of: slot) }
            }
            guard redirects <= Self.maxRedirects else {
                mapIsStale = true
                throw RedisError(.clusterUnavailable, "slot \(slot.map(String.init) ?? "?"): more than \(Self.maxRedirects) redirections (last: \(message))")
            }
        }
    }

    enum Redirection: Equatable {
        case moved(slot: Int, to: RedisConfiguration.Endpoint)
        case ask(slot: Int, to: RedisConfiguration.Endpoint)
        case tryAgain
    }

    /// Parses `MOVED 3999 127.0.0.1:6381`, `ASK 3999 127.0.0.1:6381` and `TRYAGAIN ...`.
    static func redirection(_ message: String) -> Redirection? {
        if message.hasPrefix("TRYAGAIN") { return .tryAgain }
        let parts = message.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED" || parts[0] == "ASK", let slot = Int(parts[1]),
              (0..<ClusterSlots.count).contains(slot), let colon = parts[2].lastIndex(of: ":"),
              let port = Int(parts[2][parts[2].index(after: colon)...]) else { return nil }
        let endpoint = RedisConfiguration.Endpoint(host: String(parts[2][..<colon]), port: port)
        return parts[0] == "MOVED" ? .moved(slot: slot, to: endpoint) : .ask(slot: slot, to: endpoint)
    }

    private func record(_ owner: RedisConfiguration.Endpoint, for slot: Int) {
        guard let index = masters.firstIndex(of: owner) ?? append(owner) else { return }
        owners[slot] = Int16(index)
    }

    private func append(_ master: RedisConfiguration.Endpoint) -> Int? {
        guard masters.count < Int(Int16.max) else { return nil }
        masters.append(master)
        return masters.count - 1
    }

    /// The owner of `slot`; for a command without a key, the node of the command before, or the first master.
    private func target(slot: Int?, after previous: RedisConfiguration.Endpoint?) throws(RedisError) -> RedisConfiguration.Endpoint {
        if let slot { return try owner(of: slot) }
        if let previous { return previous }
        return try anyMaster()
    }

    private func anyMaster() throws(RedisError) -> RedisConfiguration.Endpoint {
        if mapIsStale { try readMap() }
        guard let first = masters.first else { throw RedisError(.clusterUnavailable, "the cluster map names no master") }
        return first
    }

    /// The node's plain connection, made on first use. A node's connection is a direct one: it never asks
    /// Sentinels, and it selects no database.
    private func connection(to node: RedisConfiguration.Endpoint) throws(RedisError) -> RedisConnection {
        if let known = connections[node] { return known }
        // Bounded: nodes come from the seeds and the cluster's own maps; a map never names more than a few hundred.
        precondition(connections.count < 1_024, "more than 1,024 cluster nodes")
        var direct = configuration
        direct.clusterNodes = []
        direct.host = node.host
        direct.port = node.port
        let fresh = try RedisConnection(configuration: direct)
        connections[node] = fresh
        return fresh
    }

    // MARK: The slot map

    /// Reads `CLUSTER SLOTS` from the known masters, then the seeds, until one answers with a map; nodes whose last
    /// command failed are asked last, the longest failed first.
    func readMap() throws(RedisError) {
        var failures: [String] = []
        var candidates = masters
        for seed in configuration.clusterNodes where !candidates.contains(seed) { candidates.append(seed) }
        if !failedNodes.isEmpty {
            let failed = candidates.filter { failedNodes[$0] != nil }.sorted { failedNodes[$0]! < failedNodes[$1]! }
            candidates = candidates.filter { failedNodes[$0] == nil } + failed
        }
        for candidate in candidates {
            do throws(RedisError) {
                let reply = try connection(to: candidate).send(RedisCommand("CLUSTER", "SLOTS"))
                if let message = reply.errorMessage {
                    failures.append("\(candidate): \(message)")
                    continue
                }
                try apply(reply, from: candidate)
                failedNodes[candidate] = nil
                mapReads += 1
                mapIsStale = false
                return
            } catch {
                connections.removeValue(forKey: candidate)?.close()
                failedNodes[candidate] = .now
                failures.append("\(candidate): \(error.message)")
            }
        }
        throw RedisError(.clusterUnavailable, "no cluster node answered CLUSTER SLOTS: \(failures.joined(separator: "; "))")
    }

    /// `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replica...], ...]`. An empty host means the
    /// node answering (it does not know its own address).
    private func apply(_ reply: RedisReply, from node: RedisConfiguration.Endpoint) throws(RedisError) {
        guard let ranges = reply.array else { throw RedisError(.unexpectedReply, "CLUSTER SLOTS answered \(reply)") }
        var owners = [Int16](repeating: -1, count: ClusterSlots.count)
        var masters: [RedisConfiguration.Endpoint] = []
        for range in ranges {
            guard let fields = range.array, fields.count >= 3, let start = fields[0].integer, let end = fields[1].integer,
                  0 <= start, start <= end, end < ClusterSlots.count, let master = fields[2].array, master.count >= 2,
                  let host = master[0].string, let port = master[1].integer, (1...65_535).contains(port) else {
                throw RedisError(.unexpectedReply, "CLUSTER SLOTS range \(range) is not [start, end, [host, port, ...]]")
            }
            let endpoint = RedisConfiguration.Endpoint(host: host.isEmpty || host == "?" ? node.host : host, port: Int(port))
            let index = masters.firstIndex(of: endpoint) ?? { masters.append(endpoint); return masters.count - 1 }()
            for slot in Int(start)...Int(end) { owners[slot] = Int16(index) }
        }
        guard !masters.isEmpty else { throw RedisError(.clusterUnavailable, "\(node) serves no slots (is the cluster created?)") }
        self.owners = owners
        self.masters = masters
        // Connections to nodes that are no longer masters go: a demoted master answers MOVED anyway.
        for (endpoint, connection) in connections where !masters.contains(endpoint) && !configuration.clusterNodes.contains(endpoint) {
            connection.close()
            connections.removeValue(forKey: endpoint)
        }
        failedNodes = failedNodes.filter { masters.contains($0.key) || configuration.clusterNodes.contains($0.key) }
        assert(failedNodes.count <= masters.count + configuration.clusterNodes.count, "failed nodes are known nodes")
    }
}
