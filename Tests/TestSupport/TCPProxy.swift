import Foundation
import Synchronization

/// A TCP proxy on a loopback port in front of a server, with faults a test switches on and off:
/// - `.forward`: bytes flow both ways;
/// - `.swallow`: bytes from clients are read and dropped (a request that never arrives: the client's
///   outcome is unknown, the server never saw it); nothing flows back;
/// - `.dropReplies`: requests reach the server, its replies are dropped (the server applied the request,
///   the client never learns it).
/// A client that closes its side closes the server side too. One thread polls every socket; everything
/// is closed by ``stop()``. `@unchecked Sendable`: the socket table is used only by the proxy's thread;
/// the mode is a `Mutex`.
public final class TCPProxy: @unchecked Sendable {
    public enum Mode: Sendable {
        case forward
        case swallow
        case dropReplies
    }

    public let port: Int
    private let targetPort: Int
    private let listener: Int32
    private let mode = Mutex(Mode.forward)
    private let running = Atomic(true)
    private let finished = DispatchSemaphore(value: 0)
    /// Client socket -> server socket and back (the proxy thread's own table).
    private var peers: [Int32: Int32] = [:]
    private var clients: Set<Int32> = []

    public init(targetPort: Int) throws {
        self.targetPort = targetPort
        let port = try RedisServer.freeLoopbackPort()
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw RedisServerError("proxy: socket() failed") }
        var reuse: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 128) == 0 else {
            close(listener)
            throw RedisServerError("proxy: cannot listen on 127.0.0.1:\(port)")
        }
        self.port = port
        self.listener = listener
        let thread = Thread { [self] in self.loop() }
        thread.name = "tcp-proxy-\(port)"
        thread.start()
    }

    deinit { stop() }

    public func set(_ mode: Mode) {
        self.mode.withLock { $0 = mode }
    }

    /// Stops the thread and closes every socket (idempotent).
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    /// 127.0.0.1:`port` as a socket address.
    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1_024)
        while running.load(ordering: .acquiring) {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            for fd in peers.keys.sorted() { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
            for entry in fds where entry.revents != 0 {
                if entry.fd == listener {
                    accept()
                } else if peers[entry.fd] != nil {
                    pump(from: entry.fd, &buffer)
                }
            }
        }
        for fd in peers.keys { close(fd) }
        peers.removeAll()
        close(listener)
        finished.signal()
    }

    private func accept() {
        let client = Foundation.accept(listener, nil, nil)
        guard client >= 0 else { return }
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: targetPort)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard server >= 0, connected == 0 else {
            close(client)
            if server >= 0 { close(server) }
            return
        }
        precondition(peers.count < 10_000, "the proxy serves at most 5000 connections")
        peers[client] = server
        peers[server] = client
        clients.insert(client)
    }

    /// Moves what one socket has to its peer, as the mode says; closes both on end of stream or error.
    private func pump(from fd: Int32, _ buffer: inout [UInt8]) {
        guard let peer = peers[fd] else { return }
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else {
            close(fd)
            close(peer)
            peers.removeValue(forKey: fd)
            peers.removeValue(forKey: peer)
            clients.remove(fd)
            clients.remove(peer)
            return
        }
        let fromClient = clients.contains(fd)
        let forward: Bool
        switch mode.withLock({ $0 }) {
        case .forward: forward = true
        case .swallow: forward = false
        case .dropReplies: forward = fromClient
        }
        guard forward else { return }
        var offset = 0
        // Bounded: a loopback peer that accepts nothing for 2,000 tries is treated as gone.
        for _ in 0..<2_000 where offset < count {
            let written = buffer.withUnsafeBytes { write(peer, $0.baseAddress! + offset, count - offset) }
            if written > 0 {
                offset += written
            } else if errno != EAGAIN && errno != EINTR {
                break
            }
        }
    }
}
