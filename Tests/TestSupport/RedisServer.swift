import Foundation
import Synchronization
import Replication

/// A real `redis-server` for one test: a free loopback port, a temporary directory, AOF on with
/// `appendfsync always`. ``stop()`` removes its files; ``kill()`` + ``restart()`` simulate a crash and a
/// recovery on the same data.
///
/// `@unchecked Sendable`: mutable state (the process) is guarded by `lock`.
public final class RedisServer: @unchecked Sendable {
    public private(set) var port = 0
    public let directory: URL
    private let lock = NSLock()
    /// The running server's pid; 0 when it is not running.
    private var pid: pid_t = 0

    /// Starts a server and waits until it answers `PING` (at most 10 s).
    public init(extraArguments: [String] = []) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.extraArguments = extraArguments
        var lastError: (any Error)?
        // Another process may take the free port between probing and binding it: retry a few times.
        for _ in 0..<5 {
            let candidate = try Self.freeLoopbackPort()
            do {
                try launch(port: candidate)
                self.port = candidate
                return
            } catch {
                lastError = error
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError ?? RedisServerError("redis-server did not start")
    }

    private let extraArguments: [String]

    deinit {
        stop()
    }

    public var configuration: RedisConfiguration {
        RedisConfiguration(host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 500, commandTimeoutMilliseconds: 2_000)
    }

    public var url: String { "redis://127.0.0.1:\(port)" }

    public var processIdentifier: Int32? {
        lock.withLock { pid == 0 ? nil : pid }
    }

    /// A new connection to this server.
    public func connect() throws -> RedisConnection {
        try RedisConnection(configuration: configuration)
    }

    /// Kills the server with SIGKILL (no shutdown, no final fsync beyond what AOF already did).
    public func kill() {
        lock.withLock {
            guard pid != 0 else { return }
            Foundation.kill(pid, SIGKILL)
            Self.reap(pid)
            pid = 0
        }
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) the server process.
    public func pause() { signal(SIGSTOP) }
    public func resume() { signal(SIGCONT) }

    private func signal(_ signal: Int32) {
        lock.withLock {
            if pid != 0 { _ = Foundation.kill(pid, signal) }
        }
    }

    /// Starts the server again on the same port and data directory (after ``kill()`` or ``shutdown()``).
    public func restart() throws {
        kill()
        try launch(port: port)
    }

    /// Stops the server gracefully but keeps its files (for a later ``restart()``).
    public func shutdown() {
        lock.withLock {
            guard pid != 0 else { return }
            Foundation.kill(pid, SIGCONT)
            Foundation.kill(pid, SIGTERM)
            Self.reap(pid)
            pid = 0
        }
    }

    /// Stops the server and removes its directory.
    public func stop() {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }

    private func launch(port: Int) throws {
        let executable = try Self.redisServerExecutable()
        let arguments = [
            executable.path,
            "--port", String(port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--dir", directory.path,
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", directory.appendingPathComponent("redis.log").path,
        ] + extraArguments
        let spawned = try Self.spawn(arguments)
        lock.withLock { pid = spawned }

        let deadline = ContinuousClock.now + .seconds(10)
        var configuration = self.configuration
        configuration.port = port
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(spawned, &status, WNOHANG) == spawned {
                lock.withLock { pid = 0 }
                throw RedisServerError("redis-server exited at start on port \(port)")
            }
            if let connection = try? RedisConnection(configuration: configuration), let reply = try? connection.send("PING"),
               reply == .status("PONG") || reply.errorMessage?.hasPrefix("NOAUTH") == true {  // not LOADING: the AOF is in
                // Make sure the server answering is the one just started, not another on a reused port.
                if case .bulk(let info)? = try? connection.send("INFO", "server"),
                   let line = String(decoding: info, as: UTF8.self).split(separator: "\r\n").first(where: { $0.hasPrefix("process_id:") }),
                   Int32(line.dropFirst("process_id:".count)) != spawned {
                    Foundation.kill(spawned, SIGKILL)
                    Self.reap(spawned)
                    lock.withLock { pid = 0 }
                    throw RedisServerError("port \(port) answers for another redis-server")
                }
                return
            }
            usleep(20_000)
        }
        Foundation.kill(spawned, SIGKILL)
        Self.reap(spawned)
        lock.withLock { pid = 0 }
        throw RedisServerError("redis-server did not answer PING within 10 s on port \(port)")
    }

    /// posix_spawn with stdio to /dev/null. (Foundation's Process needs a run loop to notice the exit,
    /// which can stall when every cooperative thread is busy; waitpid never does.)
    static func spawn(_ arguments: [String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for descriptor: Int32 in [0, 1, 2] {
            posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        // Inherit nothing else: a server holding its parent's pipes would keep whoever reads them waiting.
        Self.markDescriptorsCloseOnExec()
        // The child must not inherit a blocked or ignored SIGTERM (signal handling in the test process
        // may have set either); otherwise a graceful stop would hang until the SIGKILL fallback.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, &cArguments, environ)
        guard result == 0 else { throw RedisServerError("posix_spawn \(arguments[0]) failed: \(result)") }
        return pid
    }

    /// Sets FD_CLOEXEC on every descriptor above stderr of this process.
    private static func markDescriptorsCloseOnExec() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for name in names {
            guard let descriptor = Int32(name), descriptor > 2 else { continue }
            let flags = fcntl(descriptor, F_GETFD)
            if flags >= 0 { _ = fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// Waits for a child to exit (bounded: escalates to SIGKILL after 10 s).
    static func reap(_ pid: pid_t) {
        var status: Int32 = 0
        for _ in 0..<1_000 {
            if waitpid(pid, &status, WNOHANG) != 0 { return }
            usleep(10_000)
        }
        Foundation.kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    /// Finds `redis-server` on PATH (or `REDIS_SERVER` in the environment).
    static func redisServerExecutable() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["REDIS_SERVER"] { return URL(fileURLWithPath: explicit) }
        let searchPath = (environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        for directory in searchPath {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent("redis-server")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw RedisServerError("redis-server not found on PATH; run `make test` (it installs it)")
    }

    /// Ports handed out by this process, below Linux's ephemeral range (32768-60999) so that neither the
    /// kernel (for client sockets or `bind(0)`) nor another test of this process can take a port that a
    /// stopped server will be restarted on.
    private static let nextPort = Mutex<Int>(20_000 + Int(getpid() % 500) * 20)

    /// A free TCP port on 127.0.0.1 that this process has not handed out before.
    public static func freeLoopbackPort() throws -> Int {
        for _ in 0..<2_000 {
            let candidate = nextPort.withLock { port -> Int in
                port = port >= 32_000 ? 20_000 : port + 1
                return port
            }
            if isFree(candidate) { return candidate }
        }
        throw RedisServerError("no free loopback port between 20000 and 32000")
    }

    private static func isFree(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = TCPProxy.loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound == 0
    }
}

public struct RedisServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
