import Foundation
import HTTPTypes
@testable import HTTPFront
import Hummingbird
import HummingbirdTLS
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOCore
import NIOSSL
import Synchronization
import Testing
import TestSupport

/// A raw TCP client: what a slow, idle or hostile client does, byte for byte.
struct RawConnection {
    let fd: Int32

    /// `from`: the loopback address to connect from (127.0.0.0/8: each one a different client to the server).
    init(port: Int, host: String = "127.0.0.1", from source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw RedisServerError("cannot bind to \(source)") }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw RedisServerError("cannot connect to \(host):\(port)") }
    }

    func send(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Reads until the peer closes or `seconds` pass; answers what arrived and whether the peer closed.
    /// The blocking reads run on a Dispatch thread: the server under test runs its handlers on the
    /// cooperative pool, which blocked test tasks would starve (it has one thread per core).
    func readUntilClosed(seconds: Double) async -> (text: String, closed: Bool) {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: blockingRead(seconds: seconds, untilResponse: false)) }
        }
    }

    /// Reads one whole response (head and its Content-Length body), the peer's close, or `seconds` pass.
    func readResponse(seconds: Double = 5) async -> (text: String, closed: Bool) {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: blockingRead(seconds: seconds, untilResponse: true)) }
        }
    }

    private static func holdsWholeResponse(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let head = text[..<end.lowerBound].lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        return text.utf8.distance(from: end.upperBound.samePosition(in: text.utf8)!, to: text.utf8.endIndex) >= length
    }

    private func blockingRead(seconds: Double, untilResponse: Bool) -> (text: String, closed: Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 50) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received.append(contentsOf: buffer[0..<count])
            if untilResponse, Self.holdsWholeResponse(received) { break }
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    func close() { _ = Foundation.close(fd) }
}

@Suite("Connection hygiene")
struct ConnectionHygieneTests {
    // A connection that leaves before its first request is no server error: the WebSocket upgrade's
    // "Error handling upgrade result" with inappropriateOperationForState goes to debug (dropped below
    // it); the same message with another error, and every other line, pass unchanged.
    @Test func anEarlyCloseIsNotAnError() {
        final class Lines: Sendable { let seen = Mutex<[String]>([]) }
        struct Recorder: LogHandler {
            let lines: Lines
            var logLevel: Logger.Level
            var metadata: Logger.Metadata = [:]
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) { lines.seen.withLock { $0.append("\(event.level) \(event.message)") } }
        }
        let early: Logger.Metadata = ["error.type": .string("\(ChannelError.inappropriateOperationForState)")]
        for level in [Logger.Level.debug, .info] {
            let lines = Lines()
            var logger = Logger(label: "filter-test") { _ in Recorder(lines: lines, logLevel: level) }
            logger.handler = EarlyCloseLogFilter(base: logger.handler)
            logger.error("Error handling upgrade result", metadata: early)
            logger.error("Error handling upgrade result", metadata: ["error.type": "\(ChannelError.ioOnClosedChannel)"])
            logger.error("something else", metadata: early)
            logger.info("a line")
            let expected = (level == .debug ? ["debug Error handling upgrade result"] : [])
                + ["error Error handling upgrade result", "error something else", "info a line"]
            #expect(lines.seen.withLock { $0 } == expected, "level \(level)")
        }
    }

    // A keep-alive connection left idle after its request is closed after the idle timeout; while it
    // keeps asking it stays open.
    @Test func idleConnectionsAreClosed() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(idleTimeoutSeconds: 1).application.test(.live) { client in
            let port = try #require(client.port)
            let connection = try RawConnection(port: port)
            defer { connection.close() }
            connection.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answered = await connection.readResponse()
            #expect(answered.text.hasPrefix("HTTP/1.1 200") && !answered.closed, "a request is answered and the connection kept")
            let idle = await connection.readUntilClosed(seconds: 4)
            #expect(idle.closed, "the idle connection is closed by the server")
        }
    }

    // Before its first request a connection may stay silent for the idle timeout, then it is closed; a
    // head dribbled in slowly gets 408 at the head timeout; garbage gets 400 and oversized heads 431, at
    // once; every answer is problem+json and closes the connection.
    @Test func firstRequestIsGuarded() async throws {
        let fixture = try HTTPFixture()
        let components = fixture.components(idleTimeoutSeconds: 1) { $0.headTimeoutSeconds = 1 }
        try await components.application.test(.live) { client in
            let port = try #require(client.port)
            let silent = try RawConnection(port: port)
            defer { silent.close() }
            let nothing = await silent.readUntilClosed(seconds: 4)
            #expect(nothing.closed && nothing.text.isEmpty, "a silent connection is closed without an answer")

            let slow = try RawConnection(port: port)
            defer { slow.close() }
            slow.send("GET /healthz HT")
            let timedOut = await slow.readUntilClosed(seconds: 4)
            #expect(timedOut.closed && timedOut.text.hasPrefix("HTTP/1.1 408"), "\(timedOut.text)")
            #expect(timedOut.text.contains("application/problem+json") && timedOut.text.contains(#""code":"INVALID_REQUEST""#))

            let cases: [(String, String)] = [
                ("GARBAGE\u{1} / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
                ("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 30_000))\r\n\r\n", "HTTP/1.1 431"),
                ("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 30_000))", "HTTP/1.1 431"),
            ]
            for (request, status) in cases {
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                connection.send(request)
                let answer = await connection.readUntilClosed(seconds: 2)
                #expect(answer.closed && answer.text.hasPrefix(status), "\(request.prefix(40)): \(answer.text.prefix(200))")
            }

            // A good first request is untouched, and the WebSocket upgrade still works behind the guard.
            let good = try RawConnection(port: port)
            defer { good.close() }
            good.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await good.readResponse().text.hasPrefix("HTTP/1.1 200"))
        }
    }

    // Beyond the connection cap a new connection is answered 503 RETRY_LATER with Retry-After and closed;
    // once one closes, a new one is served again. (The test client may hold a connection of its own, so
    // the test opens connections one at a time until the first refusal.)
    // The default cap fits the connections in a container's memory limit beside the reserve, and stays
    // below the open-file limit; a limit file reads as bytes, or as no limit.
    @Test func defaultCapFollowsTheMemoryAndOpenFileLimits() throws {
        let perConnection = ConnectionLimits.memoryPerConnection, reserve = ConnectionLimits.memoryReserve
        #expect(perConnection >= 48 * 1_024, "below what scripts/conn_memory.py measured")
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: 1_048_576, memoryLimitBytes: 1 << 30) == ((1 << 30) - reserve) / perConnection)
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: 1_048_576, memoryLimitBytes: 1 << 30) == 12_288)
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: 1_048_576, memoryLimitBytes: 4 << 30) == 50_000)
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: 20_000, memoryLimitBytes: 4 << 30) == 19_744)
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: 20_000, memoryLimitBytes: nil) == 19_744)
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: nil, memoryLimitBytes: nil) == 50_000)
        #expect(ConnectionLimits.defaultMaxConnections(openFiles: 100, memoryLimitBytes: 200 << 20) == 64)

        #expect(ContainerMemory.limit(parsing: "1073741824\n") == 1 << 30)
        #expect(ContainerMemory.limit(parsing: "max\n") == nil)
        #expect(ContainerMemory.limit(parsing: "9223372036854771712\n") == nil)
        #expect(ContainerMemory.limit(parsing: "") == nil)
        #expect(ContainerMemory.limit(parsing: "-1") == nil)

        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root.appendingPathComponent("memory"), withIntermediateDirectories: true)
        #expect(ContainerMemory.limitBytes(root: root.path) == nil)
        try "536870912\n".write(to: root.appendingPathComponent("memory/memory.limit_in_bytes"), atomically: true, encoding: .utf8)
        #expect(ContainerMemory.limitBytes(root: root.path) == 512 << 20, "cgroup v1")
        try "1073741824\n".write(to: root.appendingPathComponent("memory.max"), atomically: true, encoding: .utf8)
        #expect(ContainerMemory.limitBytes(root: root.path) == 1 << 30, "cgroup v2 first")
    }

    @Test func connectionCap() async throws {
        let fixture = try HTTPFixture()
        let cap = 3
        try await fixture.components { $0.maxConnections = cap }.application.test(.live) { client in
            let port = try #require(client.port)
            var held: [RawConnection] = []
            var refusal: (text: String, closed: Bool)?
            for _ in 0...cap where refusal == nil {
                let connection = try RawConnection(port: port)
                connection.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                let answer = await connection.readResponse()
                if answer.text.hasPrefix("HTTP/1.1 200") {
                    held.append(connection)
                } else {
                    refusal = answer
                    connection.close()
                }
            }
            defer { held.forEach { $0.close() } }
            #expect(!held.isEmpty && held.count <= cap, "\(held.count) served under a cap of \(cap)")
            let answer = try #require(refusal, "a connection beyond the cap is refused")
            #expect(answer.text.hasPrefix("HTTP/1.1 503"), "\(answer.text)")
            #expect(answer.text.contains("Retry-After: 1") && answer.text.contains(#""code":"RETRY_LATER""#))
            held.removeLast().close()
            // The server notices the close within a few milliseconds; give it at most 3 s.
            var servedAgain = false
            for _ in 0..<30 where !servedAgain {
                let again = try RawConnection(port: port)
                defer { again.close() }
                again.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                servedAgain = await again.readResponse().text.hasPrefix("HTTP/1.1 200")
                if !servedAgain { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(servedAgain, "a connection is served again once one under the cap closed")
        }
    }

    // HTTPS on the front from PEM files: answered over TLS; plain HTTP on that port gets no HTTP answer;
    // the guard behind TLS still closes a connection that never speaks.
    /// A self-signed P-256 certificate for localhost in a fresh directory: (directory, certificate, key).
    static func selfSigned() throws -> (directory: URL, certificate: String, key: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                             "-out", certificate, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        #expect(openssl.terminationStatus == 0)
        return (directory, certificate, key)
    }

    /// Whether `openssl s_client` completes a TLS 1.2 handshake with only `cipher` offered.
    static func handshakes(port: Int, tls12Cipher cipher: String) throws -> Bool {
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_2", "-cipher", cipher, "-brief"]
        client.standardInput = FileHandle.nullDevice
        client.standardOutput = FileHandle.nullDevice
        client.standardError = FileHandle.nullDevice
        try client.run()
        client.waitUntilExit()
        return client.terminationStatus == 0
    }

    // TLS 1.2 offers forward-secret AEAD suites only (no CBC, no SHA-1 MAC), and every answer over TLS carries
    // HSTS; a connection over the cap behind TLS that never starts its handshake is still closed (the refusal
    // cannot be written before a handshake, so a timer closes it).
    @Test func tlsSuitesHSTSAndTheCap() async throws {
        let (directory, certificate, key) = try Self.selfSigned()
        defer { try? FileManager.default.removeItem(at: directory) }
        let tls = try ServerConfiguration.serverTLS(certificateFile: certificate, keyFile: key)
        let fixture = try HTTPFixture()
        try await fixture.components { $0.tls = tls; $0.maxConnections = 2 }.application.test(.ahc(.https)) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("Strict-Transport-Security")!] == "max-age=31536000")
            }
            try await client.execute(uri: "/sales/none", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[HTTPField.Name("Strict-Transport-Security")!] == "max-age=31536000", "errors carry HSTS too")
            }
            let port = try #require(client.port)
            #expect(try Self.handshakes(port: port, tls12Cipher: "ECDHE-ECDSA-AES128-GCM-SHA256"), "an ECDHE AEAD suite is accepted")
            #expect(try !Self.handshakes(port: port, tls12Cipher: "ECDHE-ECDSA-AES128-SHA"), "CBC with a SHA-1 MAC is refused")
            #expect(try !Self.handshakes(port: port, tls12Cipher: "ECDHE-ECDSA-AES256-SHA384"), "CBC is refused")
            // Fill the cap with silent TLS connections (no handshake), then more beyond it: all are closed.
            let silent = try (0..<6).map { _ in try RawConnection(port: port) }
            defer { silent.forEach { $0.close() } }
            let started = Date()
            var closed = 0
            for connection in silent.suffix(4) where await connection.readUntilClosed(seconds: 6).closed { closed += 1 }
            #expect(closed == 4, "every connection beyond the cap is closed: \(closed) of 4")
            #expect(Date().timeIntervalSince(started) < 8, "within the refusal grace")
        }
    }

    @Test func httpsFront() async throws {
        let (directory, certificate, key) = try Self.selfSigned()
        defer { try? FileManager.default.removeItem(at: directory) }
        let tls = try ServerConfiguration.serverTLS(certificateFile: certificate, keyFile: key)
        #expect(throws: (any Error).self) { try ServerConfiguration.serverTLS(certificateFile: certificate, keyFile: certificate) }

        let fixture = try HTTPFixture()
        try await fixture.components(idleTimeoutSeconds: 1) { $0.tls = tls }.application.test(.ahc(.https)) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
            let port = try #require(client.port)
            // Live stock over wss://, the certificate verified against itself as the root.
            try await client.execute(uri: "/admin/sales", method: .post, headers: fixture.headers("ops", admin: true),
                                     body: ByteBuffer(string: #"{"id":"tls","name":"Phones","stock":3,"startsAt":"\#(ISO8601DateFormatter().string(from: Date()))","durationSeconds":600}"#)) {
                #expect($0.status == .created)
            }
            var trusting = TLSConfiguration.makeClientConfiguration()
            trusting.trustRoots = .file(certificate)
            let token = fixture.tokens.sign(subject: "viewer", admin: false, expiresAt: Date().addingTimeInterval(600))
            let firstFrame = Mutex<String?>(nil)
            var logger = Logger(label: "wss-test")
            logger.logLevel = .warning
            try await WebSocketClient.connect(url: "wss://localhost:\(port)/sales/tls/live", configuration: liveProtocols(token), tlsConfiguration: trusting,
                                              logger: logger) { inbound, _, _ in
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    if case .text(let text) = message { firstFrame.withLock { $0 = text } }
                    return
                }
            }
            #expect(firstFrame.withLock { $0 }?.contains(#""type":"stock""#) == true, "the stock frame arrives over wss")
            let plain = try RawConnection(port: port)
            defer { plain.close() }
            plain.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = await plain.readUntilClosed(seconds: 3)
            #expect(answer.closed && !answer.text.hasPrefix("HTTP/1.1"), "plain HTTP is not served on the HTTPS port")
            let silent = try RawConnection(port: port)
            defer { silent.close() }
            #expect(await silent.readUntilClosed(seconds: 4).closed, "a silent connection is closed behind TLS too")
        }
    }

    // A refused WebSocket upgrade is an ordinary HTTP answer with the route's problem (401, 404, 429 with
    // Retry-After), not a bare 400; an accepted one switches protocols and selects the live protocol. The token
    // travels as the subprotocol `bearer.<token>`; in the URL it is refused unless the server allows it.
    @Test func refusedUpgradesCarryTheirProblem() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(customerRate: 1).application.test(.live) { client in
            try await fixture.createSale(client, id: "ws", stock: 5)
            let port = try #require(client.port)
            let token = fixture.tokens.sign(subject: "viewer", admin: false, expiresAt: Date().addingTimeInterval(600))
            let offer = "flashsale.live.v1, bearer.\(token)"
            func upgrade(_ target: String, protocols: String? = nil) async throws -> String {
                let connection = try RawConnection(port: port)
                defer { connection.close() }
                connection.send("GET \(target) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    + (protocols.map { "Sec-WebSocket-Protocol: \($0)\r\n" } ?? "")
                    + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                return await connection.readResponse(seconds: 5).text
            }
            let unauthorized = try await upgrade("/sales/ws/live")
            #expect(unauthorized.hasPrefix("HTTP/1.1 401") && unauthorized.contains(#""code":"UNAUTHORIZED""#), "\(unauthorized)")
            #expect(unauthorized.contains("application/problem+json"))
            let inURL = try await upgrade("/sales/ws/live?access_token=\(token)")
            #expect(inURL.hasPrefix("HTTP/1.1 401") && inURL.contains("subprotocol"), "a token in the URL is refused: \(inURL)")
            let missing = try await upgrade("/sales/nosuch/live", protocols: offer)
            #expect(missing.hasPrefix("HTTP/1.1 404") && missing.contains(#""code":"NOT_FOUND""#), "\(missing)")
            let bearerOnly = try await upgrade("/sales/ws/live", protocols: "bearer.\(token)")
            #expect(bearerOnly.hasPrefix("HTTP/1.1 400") && bearerOnly.contains("flashsale.live.v1"), "\(bearerOnly)")
            let switched = try await upgrade("/sales/ws/live", protocols: offer)
            #expect(switched.hasPrefix("HTTP/1.1 101"), "\(switched)")
            let selected = switched.split(separator: "\r\n").filter { $0.lowercased().hasPrefix("sec-websocket-protocol:") }
            #expect(selected == ["sec-websocket-protocol: flashsale.live.v1"] || selected == ["Sec-WebSocket-Protocol: flashsale.live.v1"],
                    "the server selects the live protocol and never echoes the token: \(selected)")
            var limited = ""
            for _ in 0..<6 where !limited.hasPrefix("HTTP/1.1 429") {
                limited = try await upgrade("/sales/nosuch/live", protocols: offer)
            }
            #expect(limited.hasPrefix("HTTP/1.1 429") && limited.contains("Retry-After: ") && limited.contains(#""code":"RATE_LIMITED""#), "\(limited)")
        }
        // Old clients: with the query token allowed, the URL's token opens the socket.
        try await fixture.components { $0.allowQueryToken = true }.application.test(.live) { client in
            try await fixture.createSale(client, id: "old", stock: 5)
            let port = try #require(client.port)
            let token = fixture.tokens.sign(subject: "old-client", admin: false, expiresAt: Date().addingTimeInterval(600))
            let connection = try RawConnection(port: port)
            defer { connection.close() }
            connection.send("GET /sales/old/live?access_token=\(token) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            let answer = await connection.readResponse(seconds: 5).text
            #expect(answer.hasPrefix("HTTP/1.1 101"), "\(answer)")
        }
    }
}
