import Foundation

/// A real haproxy on loopback in front of a server under test: one frontend per `Frontend`, each forwarding to
/// its backend as an operator would configure it (HTTP with `option forwardfor`, or TCP with `send-proxy-v2`).
/// Started in the foreground (`-db`), stopped by ``stop()`` or at deinit.
public final class HAProxy: @unchecked Sendable {
    public enum Frontend: Sendable {
        /// HTTP mode: haproxy appends the client's address to `X-Forwarded-For` and stamps `X-Request-Start`.
        case forwardedFor(backendPort: Int)
        /// TCP mode: every connection to the backend starts with a PROXY protocol v2 header.
        case proxyProtocol(backendPort: Int)
    }

    /// The frontends' ports, in the order given.
    public let ports: [Int]
    private let process = Process()
    private let directory: URL

    public init(_ frontends: [Frontend]) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("haproxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var ports: [Int] = []
        var config = """
            global
              maxconn 2000
            defaults
              timeout connect 2s
              timeout client 20s
              timeout server 20s

            """
        for (index, frontend) in frontends.enumerated() {
            let port = try RedisServer.freeLoopbackPort()
            ports.append(port)
            switch frontend {
            case .forwardedFor(let backendPort):
                config += """
                    frontend f\(index)
                      bind 127.0.0.1:\(port)
                      mode http
                      option forwardfor
                      http-request set-header X-Request-Start t=%[date(0,us)]
                      default_backend b\(index)
                    backend b\(index)
                      mode http
                      server app 127.0.0.1:\(backendPort)

                    """
            case .proxyProtocol(let backendPort):
                config += """
                    frontend f\(index)
                      bind 127.0.0.1:\(port)
                      mode tcp
                      default_backend b\(index)
                    backend b\(index)
                      mode tcp
                      server app 127.0.0.1:\(backendPort) send-proxy-v2

                    """
            }
        }
        self.ports = ports
        let file = directory.appendingPathComponent("haproxy.cfg")
        try config.write(to: file, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: try Self.executable())
        process.arguments = ["-db", "-f", file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        for port in ports {
            while !Self.accepts(port) {
                guard Date() < deadline, process.isRunning else { stop(); throw RedisServerError("haproxy did not start (\(file.path))") }
                usleep(20_000)
            }
        }
    }

    static func executable() throws -> String {
        for candidate in ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw RedisServerError("haproxy not found; run `make test` (it installs it)")
    }

    static func accepts(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = TCPProxy.loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}
