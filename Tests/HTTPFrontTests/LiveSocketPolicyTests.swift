import Foundation
@testable import HTTPFront
import Hummingbird
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOWebSocket
import Testing
import TestSupport

/// What a client of the live socket offers: the live protocol and its token as `bearer.<token>`.
func liveProtocols(_ token: String) -> WebSocketClientConfiguration {
    WebSocketClientConfiguration(additionalHeaders: [.secWebSocketProtocol: "flashsale.live.v1, bearer.\(token)"])
}

@Suite("Live sockets: a cap per customer, closed when the token expires")
struct LiveSocketPolicyTests {
    static func connect(port: Int, saleID: String, token: String) async throws -> WebSocketCloseFrame? {
        var logger = Logger(label: "ws-client")
        logger.logLevel = .critical
        return try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/sales/\(saleID)/live", configuration: liveProtocols(token),
                                                 logger: logger) { inbound, _, _ in
            for try await _ in inbound.messages(maxSize: 1 << 16) {}
        }
    }

    // The ninth socket of one customer closes the first with the policy code (1008); other customers'
    // sockets are not counted against it.
    @Test func theOldestSocketOfACustomerGivesWay() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            let port = try #require(client.port)
            try await fixture.createSale(client, id: "sockets", stock: 5)
            let token = fixture.tokens.sign(subject: "tabs", admin: false, expiresAt: Date().addingTimeInterval(600))
            let first = Task { try await Self.connect(port: port, saleID: "sockets", token: token) }
            try await Task.sleep(for: .milliseconds(300))
            var others: [Task<WebSocketCloseFrame?, any Error>] = []
            for _ in 0..<LiveStockHub.socketsPerCustomer {
                others.append(Task { try await Self.connect(port: port, saleID: "sockets", token: token) })
                try await Task.sleep(for: .milliseconds(50))
            }
            let closed = try await first.value
            #expect(closed?.closeCode == .policyViolation, "the oldest socket is closed with 1008: \(String(describing: closed))")
            for task in others { task.cancel() }
        }
    }

    // A socket whose token expires is closed with the policy code once the 30 s leeway has passed.
    @Test func aSocketEndsWithItsToken() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            let port = try #require(client.port)
            try await fixture.createSale(client, id: "expiry", stock: 5)
            // Expired 26 s ago: still accepted (30 s of leeway), closed about 4 s after connecting.
            let token = fixture.tokens.sign(subject: "late", admin: false, expiresAt: Date().addingTimeInterval(-26))
            let started = Date()
            let closed = try await Self.connect(port: port, saleID: "expiry", token: token)
            #expect(closed?.closeCode == .policyViolation, "\(String(describing: closed))")
            #expect(Date().timeIntervalSince(started) < 15)
        }
    }
}
