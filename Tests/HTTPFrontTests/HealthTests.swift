import HTTPFront
import Hummingbird
import HummingbirdTesting
import Logging
import Replication
import Testing
import TestSupport

@Suite("Health endpoints on the live server")
struct HealthTests {
    // /readyz follows the ledger: 200 while Redis answers, 503 once it is stopped; /healthz stays 200.
    @Test func readinessFollowsRedis() async throws {
        let server = try RedisServer()
        let configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, redis: server.configuration,
            jwtSecret: "test-secret-test-secret", instanceID: "test-instance"
        )
        let application = FlashSaleApplication.build(configuration: configuration, logger: Logger(label: "test"))
        try await application.test(.live) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#""redis":"ok""#))
            }
            server.shutdown()
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("REDIS_CONNECTION"))
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }
}
