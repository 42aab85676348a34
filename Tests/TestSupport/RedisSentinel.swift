import Foundation
import Replication

/// A real `redis-sentinel` watching a primary, on a free loopback port with its own config file (Sentinel
/// rewrites it). Fast timings for tests: the primary is down after 1 s, a failover may take 3 s.
///
/// `@unchecked Sendable`: the pid is guarded by `lock`.
public final class RedisSentinel: @unchecked Sendable {
    public let port: Int
    public let masterName: String
    private let directory: URL
    private let lock = NSLock()
    private var pid: pid_t = 0

    public init(monitoring primary: RedisServer, masterName: String = "flashsale", quorum: Int = 2) throws {
        self.masterName = masterName
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-sentinel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try RedisServer.freeLoopbackPort()
        let configuration = directory.appendingPathComponent("sentinel.conf")
        try """
        port \(port)
        bind 127.0.0.1
        daemonize no
        dir \(directory.path)
        logfile \(directory.appendingPathComponent("sentinel.log").path)
        sentinel monitor \(masterName) 127.0.0.1 \(primary.port) \(quorum)
        sentinel down-after-milliseconds \(masterName) 1000
        sentinel failover-timeout \(masterName) 3000
        sentinel parallel-syncs \(masterName) 1

        """.write(to: configuration, atomically: true, encoding: .utf8)
        let spawned = try RedisServer.spawn([try RedisServer.redisServerExecutable().path, configuration.path, "--sentinel"])
        lock.withLock { pid = spawned }
        let deadline = ContinuousClock.now + .seconds(10)
        var endpoint = RedisConfiguration(host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 300, commandTimeoutMilliseconds: 1_000)
        endpoint.sentinels = []
        while ContinuousClock.now < deadline {
            if let connection = try? RedisConnection(configuration: endpoint),
               (try? connection.send("SENTINEL", "get-master-addr-by-name", masterName))?.array?.count == 2 {
                return
            }
            usleep(50_000)
        }
        stop()
        throw RedisServerError("redis-sentinel did not answer on port \(port) within 10 s")
    }

    deinit { stop() }

    public var endpoint: RedisConfiguration.Endpoint { .init(host: "127.0.0.1", port: port) }

    /// The primary this Sentinel names now.
    public func primaryPort() -> Int? {
        let configuration = RedisConfiguration(host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 300, commandTimeoutMilliseconds: 1_000)
        guard let connection = try? RedisConnection(configuration: configuration),
              let address = (try? connection.send("SENTINEL", "get-master-addr-by-name", masterName))?.array, address.count == 2 else { return nil }
        return address[1].integer.map(Int.init)
    }

    /// `SENTINEL FAILOVER`: promote a replica now, without waiting for the primary to fail.
    public func forceFailover() throws {
        let configuration = RedisConfiguration(host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 300, commandTimeoutMilliseconds: 2_000)
        try RedisConnection(configuration: configuration).send("SENTINEL", "FAILOVER", masterName).throwingServerError()
    }

    public func stop() {
        lock.withLock {
            guard pid != 0 else { return }
            Foundation.kill(pid, SIGKILL)
            RedisServer.reap(pid)
            pid = 0
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
