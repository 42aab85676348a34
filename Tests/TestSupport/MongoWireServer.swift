import Foundation

/// MongoDB's wire-protocol test server (`mockupdb`, from pip) holding documents in memory, run as a
/// child process on free loopback ports: the real libmongoc driver talks to it over the real wire
/// protocol. A control port records every command it received and scripts faults (command errors,
/// per-document write errors, a connection dropped after a write, the server unreachable); see
/// `Tests/Fixtures/mongo_wire_server.py`.
///
/// `@unchecked Sendable`: the pid is guarded by `lock`.
public final class MongoWireServer: @unchecked Sendable {
    public private(set) var port = 0
    public private(set) var controlPort = 0
    /// With a replica set: the secondary member's port (the primary's is `port`); 0 for a standalone.
    public private(set) var secondaryPort = 0
    /// The replica set's name, when the server plays one.
    public let replicaSet: String?
    private let lock = NSLock()
    private var pid: pid_t = 0

    /// `mongodb://` URI for libmongoc: a direct connection (or the replica set's two members), short timeouts
    /// (faults are scripted, so waiting is waste).
    public var uri: String {
        // A large run (RetentionTests with FLASHSALE_RETENTION_ORDERS=100000) gives the stand-in's linear scans
        // longer: FLASHSALE_TEST_MONGO_SOCKET_TIMEOUT_MS.
        let socketTimeout = ProcessInfo.processInfo.environment["FLASHSALE_TEST_MONGO_SOCKET_TIMEOUT_MS"].flatMap(Int.init) ?? 2_000
        let timeouts = "serverSelectionTimeoutMS=1000&connectTimeoutMS=500&socketTimeoutMS=\(socketTimeout)&heartbeatFrequencyMS=500"
        guard let replicaSet else { return "mongodb://127.0.0.1:\(port)/flashsale?directConnection=true&\(timeouts)" }
        return "mongodb://127.0.0.1:\(port),127.0.0.1:\(secondaryPort)/flashsale?replicaSet=\(replicaSet)&\(timeouts)"
    }

    /// Starts the server and waits until its control port answers (at most 15 s). With `replicaSet`, two wire
    /// ports play a replica set of that name over one store: `port` the primary, `secondaryPort` a secondary.
    public init(replicaSet: String? = nil) throws {
        self.replicaSet = replicaSet
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python").path
        let script = root.appendingPathComponent("Tests/Fixtures/mongo_wire_server.py").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw RedisServerError("\(python) is missing; run `make test` (scripts/bootstrap.sh installs mockupdb into .venv)")
        }
        var lastError: (any Error)?
        for _ in 0..<3 {
            let port = try RedisServer.freeLoopbackPort()
            let controlCandidate = try RedisServer.freeLoopbackPort()
            var arguments = [python, script, "--port", String(port), "--control-port", String(controlCandidate)]
            if let replicaSet {
                secondaryPort = try RedisServer.freeLoopbackPort()
                arguments += ["--replica-set", replicaSet, "--secondary-port", String(secondaryPort)]
            }
            let spawned = try RedisServer.spawn(arguments)
            lock.withLock { pid = spawned }
            self.port = port
            self.controlPort = controlCandidate
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                var status: Int32 = 0
                if waitpid(spawned, &status, WNOHANG) == spawned {
                    lock.withLock { pid = 0 }
                    lastError = RedisServerError("mongo_wire_server.py exited at start (status \(status))")
                    break
                }
                if let reply = try? self.control(["op": "ping"]), reply["ok"] as? Bool == true { return }
                usleep(50_000)
            }
            stop()
            lastError = lastError ?? RedisServerError("mongo_wire_server.py did not answer within 15 s")
        }
        throw lastError ?? RedisServerError("mongo_wire_server.py did not start")
    }

    deinit { stop() }

    public func stop() {
        lock.withLock {
            guard pid != 0 else { return }
            Foundation.kill(pid, SIGTERM)
            RedisServer.reap(pid)
            pid = 0
        }
    }

    /// Sends one control operation and answers the server's JSON reply (relaxed extended JSON).
    @discardableResult
    public func control(_ operation: [String: Any]) throws -> [String: Any] {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw RedisServerError("socket() failed") }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(controlPort).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw RedisServerError("control port \(controlPort) refused the connection") }
        var line = try JSONSerialization.data(withJSONObject: operation)
        line.append(0x0A)
        let sent = line.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        guard sent == line.count else { throw RedisServerError("control write failed") }
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !received.contains(0x0A) {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { throw RedisServerError("control connection closed before a reply") }
            received.append(contentsOf: buffer[0..<count])
            guard received.count < 256 * 1_024 * 1_024 else { throw RedisServerError("control reply too large") }
        }
        guard let object = try JSONSerialization.jsonObject(with: received.prefix(while: { $0 != 0x0A })) as? [String: Any] else {
            throw RedisServerError("control reply is not a JSON object")
        }
        if let error = object["error"] { throw RedisServerError("control: \(error)") }
        return object
    }

    /// The documents of a collection, in insertion order.
    public func documents(_ collection: String) throws -> [[String: Any]] {
        try control(["op": "documents", "collection": collection])["documents"] as? [[String: Any]] ?? []
    }

    /// The data-plane commands received (optionally only those named `name`: "update", "insert", ...; with a
    /// replica set, optionally only those the `primary` or the `secondary` served).
    public func commands(named name: String? = nil, servedBy role: String? = nil) throws -> [[String: Any]] {
        var operation: [String: Any] = ["op": "commands"]
        if let name { operation["name"] = name }
        if let role { operation["role"] = role }
        return try control(operation)["commands"] as? [[String: Any]] ?? []
    }

    /// The raw JSON of everything received, for "this text never appears" checks.
    public func journalText() throws -> String {
        let commands = try control(["op": "commands"])["commands"] ?? []
        return String(decoding: try JSONSerialization.data(withJSONObject: commands), as: UTF8.self)
    }
}
