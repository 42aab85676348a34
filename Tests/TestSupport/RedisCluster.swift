import Foundation
import Replication

/// A Redis Cluster of real `redis-server`s on loopback: `masters` masters sharing the 16,384 slots evenly and
/// `replicasPerMaster` replicas each, every node in a directory of its own (two nodes sharing one with AOF on
/// would delete each other's files on a rewrite). Ports stay below 55535: the cluster bus listens on port + 10000.
///
/// `@unchecked Sendable`: the servers are set once; each ``RedisServer`` guards its own process.
public final class RedisCluster: @unchecked Sendable {
    public let masters: [RedisServer]
    public let replicas: [RedisServer]
    /// Node id of every server, by port.
    public let nodeIDs: [Int: String]

    /// Starts the nodes, assigns the slots, joins them and waits until every node says `cluster_state:ok`
    /// (bounded: 20 s).
    public init(masters masterCount: Int = 3, replicasPerMaster: Int = 0, nodeTimeoutMilliseconds: Int = 1_000) throws {
        precondition((1...8).contains(masterCount) && (0...2).contains(replicasPerMaster), "1-8 masters, 0-2 replicas each")
        let arguments = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-node-timeout", String(nodeTimeoutMilliseconds), "--cluster-require-full-coverage", "yes"]
        let masters = try (0..<masterCount).map { _ in try RedisServer(extraArguments: arguments) }
        let replicas = try (0..<(masterCount * replicasPerMaster)).map { _ in try RedisServer(extraArguments: arguments) }
        self.masters = masters
        self.replicas = replicas
        var ids: [Int: String] = [:]
        for server in masters + replicas {
            ids[server.port] = try server.connect().send("CLUSTER", "MYID").throwingServerError().string
        }
        nodeIDs = ids

        let first = try masters[0].connect()
        for server in (masters + replicas).dropFirst() {
            try first.send("CLUSTER", "MEET", "127.0.0.1", String(server.port)).throwingServerError()
        }
        let share = ClusterSlots.count / masterCount
        for (index, master) in masters.enumerated() {
            let start = index * share
            let end = index == masterCount - 1 ? ClusterSlots.count - 1 : start + share - 1
            try master.connect().send("CLUSTER", "ADDSLOTSRANGE", String(start), String(end)).throwingServerError()
        }
        // A replica can follow its master once it knows it (the MEET has spread).
        for (index, replica) in replicas.enumerated() {
            let master = masters[index % masterCount]
            let connection = try replica.connect()
            try Self.until("replica \(replica.port) knows master \(master.port)") {
                (try? connection.send("CLUSTER", "REPLICATE", ids[master.port] ?? "").throwingServerError()) != nil
            }
        }
        try waitUntilHealthy()
    }

    deinit { stop() }

    /// The seed nodes a service is given: every master.
    public var seeds: [RedisConfiguration.Endpoint] { masters.map { RedisConfiguration.Endpoint(host: "127.0.0.1", port: $0.port) } }

    /// A configuration that routes through the cluster.
    public var configuration: RedisConfiguration {
        var configuration = RedisConfiguration(host: "127.0.0.1", port: masters[0].port, connectTimeoutMilliseconds: 500, commandTimeoutMilliseconds: 2_000)
        configuration.clusterNodes = seeds
        return configuration
    }

    public func connect() throws -> RedisConnection { try RedisConnection(configuration: configuration) }

    /// The server that owns `slot` now, per the first reachable master's view.
    public func owner(of slot: Int) throws -> RedisServer {
        let all = masters + replicas
        for server in all where server.processIdentifier != nil {
            guard let ranges = try? server.connect().send("CLUSTER", "SLOTS").array else { continue }
            for range in ranges {
                guard let fields = range.array, fields.count >= 3, let start = fields[0].integer, let end = fields[1].integer,
                      start <= slot, slot <= end, let port = fields[2].array?[1].integer else { continue }
                if let server = all.first(where: { $0.port == Int(port) }) { return server }
            }
        }
        throw RedisServerError("no node names an owner of slot \(slot)")
    }

    /// Moves `slot` from its owner to `target` the way `redis-cli --cluster reshard` does: `IMPORTING` on the
    /// target, `MIGRATING` on the source, `MIGRATE` of its keys in batches, then `SETSLOT NODE` everywhere.
    /// `between` runs after the first batch of keys moved (the slot is half-migrated then).
    public func migrate(slot: Int, to target: RedisServer, keysPerBatch: Int = 100, between: (() throws -> Void)? = nil) throws {
        let source = try owner(of: slot)
        guard source.port != target.port else { return }
        let sourceConnection = try source.connect()
        let targetConnection = try target.connect()
        let slotText = String(slot)
        try targetConnection.send("CLUSTER", "SETSLOT", slotText, "IMPORTING", nodeIDs[source.port] ?? "").throwingServerError()
        try sourceConnection.send("CLUSTER", "SETSLOT", slotText, "MIGRATING", nodeIDs[target.port] ?? "").throwingServerError()
        var batches = 0
        while true {
            let keys = try sourceConnection.send("CLUSTER", "GETKEYSINSLOT", slotText, String(keysPerBatch)).throwingServerError().array ?? []
            if keys.isEmpty { break }
            var command = RedisCommand("MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS")
            for key in keys { command.append(key.string ?? "") }
            try sourceConnection.send(command).throwingServerError()
            batches += 1
            if batches == 1 { try between?() }
            precondition(batches < 10_000, "a slot that never empties")
        }
        if batches == 0 { try between?() }
        for server in masters where server.processIdentifier != nil {
            try server.connect().send("CLUSTER", "SETSLOT", slotText, "NODE", nodeIDs[target.port] ?? "").throwingServerError()
        }
    }

    /// Waits until every running node says `cluster_state:ok` and knows every node, and every replica is in sync
    /// (bounded: 20 s).
    public func waitUntilHealthy() throws {
        let running = (masters + replicas).filter { $0.processIdentifier != nil }
        try Self.until("the cluster is ok on every node") {
            for server in running {
                guard let info = try? server.connect().send("CLUSTER", "INFO").string,
                      info.contains("cluster_state:ok"), info.contains("cluster_known_nodes:\(masters.count + replicas.count)") else { return false }
            }
            // Every running replica has finished its sync with its master (`ROLE`: slave, host, port, connected, offset).
            for replica in running where replicas.contains(where: { $0 === replica }) {
                guard let role = try? replica.connect().send("ROLE").array, role.first?.string != "slave" || role.count >= 4 && role[3].string == "connected" else {
                    return false
                }
            }
            return true
        }
    }

    public func stop() {
        for server in masters + replicas { server.stop() }
    }

    static func until(_ what: String, seconds: Double = 20, _ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1_000))
        while ContinuousClock.now < deadline {
            if try condition() { return }
            usleep(50_000)
        }
        throw RedisServerError("timed out waiting until \(what)")
    }
}
