import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport

/// A raw TCP client: what a slow, idle or hostile client does, byte for byte.
struct RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw RedisServerError("cannot connect to 127.0.0.1:\(port)") }
    }

    func send(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Reads until the peer closes or `seconds` pass; answers what arrived and whether the peer closed.
    func readUntilClosed(seconds: Double) -> (text: String, closed: Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 50) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received.append(contentsOf: buffer[0..<count])
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    func close() { _ = Foundation.close(fd) }
}

@Suite("Connection hygiene")
struct ConnectionHygieneTests {
    // A keep-alive connection left idle after its request is closed after the idle timeout; while it
    // keeps asking it stays open.
    @Test func idleConnectionsAreClosed() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(idleTimeoutSeconds: 1).application.test(.live) { client in
            let port = try #require(client.port)
            let connection = try RawConnection(port: port)
            defer { connection.close() }
            connection.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answered = connection.readUntilClosed(seconds: 0.5)
            #expect(answered.text.hasPrefix("HTTP/1.1 200") && !answered.closed, "a request is answered and the connection kept")
            let idle = connection.readUntilClosed(seconds: 4)
            #expect(idle.closed, "the idle connection is closed by the server")
        }
    }
}
