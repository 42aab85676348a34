import Foundation
import HTTPTypes
import NIOCore
@testable import HTTPFront
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport

@Suite("Behind proxies: the client's own budget, from X-Forwarded-For or PROXY protocol v2")
struct TrustedProxyTests {
    /// One request on its own connection from `source` (a loopback address: a different client each), answered status.
    static func status(port: Int, from source: String, path: String = "/sales/none", headers: [String] = []) async throws -> Int {
        let connection = try RawConnection(port: port, from: source)
        defer { connection.close() }
        connection.send("GET \(path) HTTP/1.1\r\nHost: shop\r\n" + headers.map { $0 + "\r\n" }.joined() + "Connection: close\r\n\r\n")
        let text = await connection.readResponse(seconds: 5).text
        guard text.hasPrefix("HTTP/1.1 "), let code = Int(text.dropFirst(9).prefix(3)) else { return 0 }
        return code
    }

    /// `count` requests from `source`; how many answered 429.
    static func limited(_ count: Int, port: Int, from source: String, headers: [String]) async throws -> Int {
        var limited = 0
        for _ in 0..<count where try await status(port: port, from: source, headers: headers) == 429 { limited += 1 }
        return limited
    }

    static let loopbackProxy = try! TrustedProxies(parsing: "127.0.0.1/32")

    // Behind haproxy (HTTP, `option forwardfor`), every shopper has a budget of their own: one client's burst does
    // not limit the next client, and a client cannot escape its budget by writing X-Forwarded-For itself.
    @Test func forwardedForGivesEachShopperABudget() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(addressRate: 5) { $0.trustedProxies = Self.loopbackProxy }.application.test(.live) { client in
            let port = try #require(client.port)
            let proxy = try HAProxy([.forwardedFor(backendPort: port)])
            defer { proxy.stop() }
            let bearer = "Authorization: Bearer " + fixture.tokens.sign(subject: "shopper", admin: false, expiresAt: Date().addingTimeInterval(600))
            // A burst of 14 from 127.0.0.2 (5/s, bursts of 10): the last ones are limited.
            #expect(try await Self.limited(14, port: proxy.ports[0], from: "127.0.0.2", headers: [bearer]) >= 3)
            // The next shopper, behind the same proxy, is not.
            #expect(try await Self.limited(5, port: proxy.ports[0], from: "127.0.0.3", headers: [bearer]) == 0, "another shopper keeps their budget")
            // A client's own X-Forwarded-For (and Forwarded), rotated on every request, does not give it a fresh budget:
            // haproxy appends the real address to X-Forwarded-For, the rightmost untrusted entry counts, and Forwarded
            // (which haproxy passes through) is not read.
            var forged = 0
            for index in 0..<14 where try await Self.status(port: proxy.ports[0], from: "127.0.0.4",
                                                           headers: [bearer, "X-Forwarded-For: 203.0.113.\(index)",
                                                                     "Forwarded: for=198.51.100.\(index)"]) == 429 { forged += 1 }
            #expect(forged >= 3, "a forged X-Forwarded-For does not escape the budget: \(forged) limited")
            // Straight to the service (not through a trusted proxy), X-Forwarded-For means nothing.
            var direct = 0
            for index in 0..<14 where try await Self.status(port: port, from: "127.0.0.5",
                                                           headers: [bearer, "X-Forwarded-For: 198.51.100.\(index)"]) == 429 { direct += 1 }
            #expect(direct >= 3, "an untrusted peer's X-Forwarded-For is ignored: \(direct) limited")
        }
    }

    // Requests whose token fails verification spend a budget of their own: a flood of junk from one address is
    // limited, and a shopper at that address still orders.
    @Test func junkTokensDoNotSpendShoppersBudget() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(addressRate: 5) { $0.trustedProxies = Self.loopbackProxy; $0.rateLimitUnverifiedPerAddress = 2 }
            .application.test(.live) { client in
                let port = try #require(client.port)
                let proxy = try HAProxy([.forwardedFor(backendPort: port)])
                defer { proxy.stop() }
                var statuses: [Int: Int] = [:]
                for _ in 0..<30 {
                    statuses[try await Self.status(port: proxy.ports[0], from: "127.0.0.6", headers: ["Authorization: Bearer junk.junk.junk"]), default: 0] += 1
                }
                #expect(statuses[401, default: 0] >= 4 && statuses[429, default: 0] >= 10, "junk is refused, then limited: \(statuses)")
                let bearer = "Authorization: Bearer " + fixture.tokens.sign(subject: "real", admin: false, expiresAt: Date().addingTimeInterval(600))
                #expect(try await Self.limited(8, port: proxy.ports[0], from: "127.0.0.6", headers: [bearer]) == 0,
                        "the shopper at the junk's address keeps the address budget")
            }
    }

    // haproxy in TCP mode with `send-proxy-v2`: the header's source address is the client. A connection without the
    // header, or from an untrusted peer, is closed unanswered.
    @Test func proxyProtocolV2() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components(addressRate: 5) { $0.trustedProxies = Self.loopbackProxy; $0.proxyProtocol = true }
            .application.test(.live) { client in
                let port = try #require(client.port)
                let proxy = try HAProxy([.proxyProtocol(backendPort: port)])
                defer { proxy.stop() }
                let bearer = "Authorization: Bearer " + fixture.tokens.sign(subject: "tcp", admin: false, expiresAt: Date().addingTimeInterval(600))
                #expect(try await Self.status(port: proxy.ports[0], from: "127.0.0.7", headers: [bearer]) == 404, "served through the proxy")
                #expect(try await Self.limited(14, port: proxy.ports[0], from: "127.0.0.8", headers: [bearer]) >= 3)
                #expect(try await Self.limited(5, port: proxy.ports[0], from: "127.0.0.9", headers: [bearer]) == 0, "each client its own budget")
                #expect(ProxiedPeers.shared.count <= 2, "addresses are forgotten with their connections")
                // Plain HTTP from the trusted address, and anything from an untrusted one: closed without an answer.
                #expect(try await Self.status(port: port, from: "127.0.0.1", headers: [bearer]) == 0)
                #expect(try await Self.status(port: port, from: "127.0.0.10", headers: [bearer]) == 0)
            }
    }

    // With the front's stamps trusted: a request the front read before the opening is refused SALE_NOT_STARTED even
    // when it completes after the opening; the same stamp from an untrusted peer is ignored.
    @Test func earlyStampsDoNotQueueFirst() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components { $0.trustedProxies = try! TrustedProxies(parsing: "127.0.0.11"); $0.trustRequestStart = true }
            .application.test(.live) { client in
                try await fixture.createSale(client, id: "stamped", stock: 5, startsIn: -1)
                let port = try #require(client.port)
                func order(from source: String, customer: String, secondsAgo: Double = 5) async throws -> String {
                    let stamp = Int64((Date().timeIntervalSince1970 - secondsAgo) * 1_000_000)
                    let connection = try RawConnection(port: port, from: source)
                    defer { connection.close() }
                    let body = HTTPFixture.orderBody
                    connection.send("POST /sales/stamped/orders HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer "
                        + fixture.tokens.sign(subject: customer, admin: false, expiresAt: Date().addingTimeInterval(600))
                        + "\r\nContent-Type: application/json\r\nX-Request-Start: t=\(stamp)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body)
                    return await connection.readResponse(seconds: 5).text
                }
                // Requests read promptly show the front's clock agrees with this one (see FrontClock).
                for index in 0..<3 { #expect(try await order(from: "127.0.0.11", customer: "prompt-\(index)", secondsAgo: 0.001).hasPrefix("HTTP/1.1 201")) }
                let trusted = try await order(from: "127.0.0.11", customer: "early")
                #expect(trusted.hasPrefix("HTTP/1.1 409"), "\(trusted)")
                #expect(trusted.contains(#""code":"SALE_NOT_STARTED""#), "\(trusted)")
                let untrusted = try await order(from: "127.0.0.12", customer: "ignored")
                #expect(untrusted.hasPrefix("HTTP/1.1 201"), "an untrusted peer's stamp means nothing: \(untrusted)")
            }
    }

    // The client behind trusted hops: the rightmost untrusted entry; `Forwarded` first; IPv6 by its /64.
    @Test func clientKeys() throws {
        var trusted = try TrustedProxies(parsing: "10.0.0.0/8, 192.168.1.7, fd00::/8")
        func key(_ peer: String, _ fields: [(String, String)]) -> String {
            var headers = HTTPFields()
            for (name, value) in fields { headers.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
            return trusted.clientKey(peer: peer, headers: headers)
        }
        #expect(key("10.1.2.3", [("Forwarded", "for=7.7.7.7"), ("X-Forwarded-For", "9.9.9.9")]) == "9.9.9.9",
                "only the header the proxies write is read (a client's Forwarded passes through them)")
        #expect(key("203.0.113.9", [("X-Forwarded-For", "1.2.3.4")]) == "203.0.113.9", "untrusted peer: its own address")
        #expect(key("10.1.2.3", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.9.9.9")]) == "1.2.3.4")
        #expect(key("10.1.2.3", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")]) == "1.2.3.4", "repeated fields join")
        #expect(key("10.1.2.3", [("X-Forwarded-For", "10.4.4.4, 192.168.1.7")]) == "10.4.4.4", "all trusted: the leftmost")
        #expect(key("10.1.2.3", [("X-Forwarded-For", "garbage, 10.4.4.4")]) == "10.4.4.4", "a non-address ends the walk")
        #expect(key("10.1.2.3", []) == "10.1.2.3")
        trusted.header = .forwarded
        #expect(key("10.1.2.3", [("Forwarded", #"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#), ("X-Forwarded-For", "9.9.9.9")])
            == "2001:db8:cafe:0::/64")
        trusted.header = .xForwardedFor
        #expect(key("10.1.2.3", [("X-Forwarded-For", "1.2.3.4:5678")]) == "1.2.3.4", "a port is dropped")
        #expect(key("2001:db8::1", []) == key("2001:db8::ffff:2", []), "one /64, one budget")
        #expect(key("2001:db8::1", []) != key("2001:db8:0:1::1", []))
        #expect(key("::ffff:1.2.3.4", []) == "1.2.3.4", "IPv4-mapped IPv6 is IPv4")
        #expect(throws: TrustedProxies.ParseError.self) { try TrustedProxies(parsing: "10.0.0.0/33") }
        #expect(throws: TrustedProxies.ParseError.self) { try TrustedProxies(parsing: "proxy.example") }
    }

    // The PROXY v2 parser: IPv4 and IPv6 sources, LOCAL, partial headers, and what is not a header.
    @Test func proxyHeaders() {
        func header(command: UInt8, family: UInt8, address: [UInt8]) -> ByteBuffer {
            var buffer = ByteBuffer(bytes: ProxyProtocolDecoder.signature)
            buffer.writeBytes([0x20 | command, family, UInt8(address.count >> 8), UInt8(address.count & 0xFF)] + address)
            return buffer
        }
        let v4 = header(command: 1, family: 0x11, address: [192, 0, 2, 1, 10, 0, 0, 1, 0x1F, 0x90, 0x00, 0x50])
        #expect(ProxyProtocolDecoder.parse(v4) == .header(length: 28, source: "192.0.2.1"))
        #expect(ProxyProtocolDecoder.parse(v4.getSlice(at: 0, length: 20)!) == .needMore)
        let v6 = header(command: 1, family: 0x21, address: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [7] + [UInt8](repeating: 0, count: 20))
        #expect(ProxyProtocolDecoder.parse(v6) == .header(length: 52, source: "2001:db8:0:0:0:0:0:7"))
        #expect(ProxyProtocolDecoder.parse(header(command: 0, family: 0, address: [])) == .header(length: 16, source: nil))
        #expect(ProxyProtocolDecoder.parse(ByteBuffer(string: "GET / HTTP/1.1\r\n")) == .invalid("not a PROXY protocol v2 header"))
        #expect(ProxyProtocolDecoder.parse(ByteBuffer(string: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")) == .invalid("not a PROXY protocol v2 header"))
        #expect(ProxyProtocolDecoder.parse(header(command: 1, family: 0x11, address: [1, 2, 3])) == .invalid("short IPv4 addresses"))
    }
}
