import Foundation
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
            // The durability check runs at start: the test server has AOF with appendfsync always.
            var durability = ""
            for _ in 0..<40 where !durability.contains("durable (") {
                try await client.execute(uri: "/readyz", method: .get) { durability = String(buffer: $0.body) }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(durability.contains(#""ledgerDurability":"durable (appendonly yes, appendfsync always)""#))
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(String(buffer: response.body).contains("flashsale_ledger_durable 1"))
            }
            server.shutdown()
            // Readiness is probed at most every 500 ms (a cached result in between): unready within a second.
            let stopped = Date()
            var answer: (status: HTTPResponse.Status, body: String) = (.ok, "")
            while answer.status != .serviceUnavailable, Date().timeIntervalSince(stopped) < 3 {
                try await client.execute(uri: "/readyz", method: .get) { answer = ($0.status, String(buffer: $0.body)) }
                if answer.status != .serviceUnavailable { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(answer.status == .serviceUnavailable)
            #expect(answer.body.contains("REDIS_CONNECTION"))
            #expect(Date().timeIntervalSince(stopped) < 1, "unready within the probe's 500 ms freshness")
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    // On Redis Cluster, readiness asks every master: ready while any of them answers with the scripts loaded (a master
    // down stops only its own sales; were every instance unready for it, the sales on the other masters would stop
    // too), the failing masters named; unready once none answers. A master that stalls never makes /readyz slow: the
    // last answer is given while the probe waits for the stalled node.
    @Test func readinessOnRedisClusterAsksEveryMaster() async throws {
        let cluster = try RedisCluster(masters: 3, nodeTimeoutMilliseconds: 60_000)
        let configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, redis: cluster.configuration,
            jwtSecret: "test-secret-test-secret", instanceID: "test-instance"
        )
        let application = FlashSaleApplication.build(configuration: configuration, logger: Logger(label: "test"))
        try await application.test(.live) { client in
            func readyz() async throws -> (status: HTTPResponse.Status, body: String, took: Duration) {
                let started = ContinuousClock.now
                return try await client.execute(uri: "/readyz", method: .get) { ($0.status, String(buffer: $0.body), started.duration(to: .now)) }
            }
            func until(_ what: String, seconds: Double = 10, _ condition: ((status: HTTPResponse.Status, body: String, took: Duration)) -> Bool) async throws -> String {
                let deadline = ContinuousClock.now + .seconds(seconds)
                var last = try await readyz()
                while !condition(last), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    last = try await readyz()
                }
                #expect(condition(last), "\(what): \(last.status) \(last.body)")
                return last.body
            }
            _ = try await until("ready, every master answering") { $0.status == .ok && $0.body.contains(#""masters":3,"answering":3"#) }

            let stalled = cluster.masters[1]
            stalled.pause()
            var statuses: Set<HTTPResponse.Status> = []
            var slowest = Duration.zero
            var named = false
            let stallEnds = ContinuousClock.now + .seconds(4)
            while ContinuousClock.now < stallEnds {
                let answer = try await readyz()
                statuses.insert(answer.status)
                slowest = max(slowest, answer.took)
                named = named || (answer.body.contains(#""answering":2"#) && answer.body.contains(":\(stalled.port)"))
                try await Task.sleep(for: .milliseconds(100))
            }
            stalled.resume()
            #expect(statuses == [.ok], "ready while two masters of three answer: \(statuses)")
            #expect(slowest < .milliseconds(500), "the slowest /readyz took \(slowest) while a master stalled")
            #expect(named, "the stalled master is named in details.redisCluster")
            _ = try await until("every master answering again") { $0.status == .ok && $0.body.contains(#""answering":3"#) }

            cluster.masters[0].kill()
            _ = try await until("ready with one master down") { $0.status == .ok && $0.body.contains(#""answering":2"#) }
            for master in cluster.masters.dropFirst() { master.kill() }
            let down = try await until("unready with every master down") { $0.status == .serviceUnavailable }
            #expect(down.contains("REDIS_CLUSTER_UNAVAILABLE") || down.contains("no Redis Cluster master answers"), "\(down)")
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
        }
    }

    // With FLASHSALE_METRICS_PORT, /metrics answers on that port (the histogram included) and 404 on the API port,
    // so a NetworkPolicy can admit only Prometheus to it.
    @Test func metricsOnTheirOwnPort() async throws {
        let server = try RedisServer()
        var configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, redis: server.configuration,
            jwtSecret: "test-secret-test-secret", instanceID: "test-instance"
        )
        let metricsPort = try RedisServer.freeLoopbackPort()
        configuration.metricsPort = metricsPort
        let application = FlashSaleApplication.build(configuration: configuration, logger: Logger(label: "test"))
        try await application.test(.live) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .notFound, "the API port does not serve /metrics")
            }
            var text = ""
            for _ in 0..<50 where !text.contains("flashsale_http_request_duration_seconds_bucket") {
                do {
                    text = try await TestClient.withClient(host: "127.0.0.1", port: metricsPort) { metrics in
                        let response = try await metrics.get("/metrics")
                        return response.status == .ok ? String(buffer: response.body ?? ByteBuffer()) : ""
                    }
                } catch {
                    try await Task.sleep(for: .milliseconds(100))  // the metrics listener may still be starting
                }
            }
            #expect(text.contains(#"flashsale_http_request_duration_seconds_bucket{route="/healthz",method="GET",status_class="2xx",le="0.005"}"#), "\(text)")
            #expect(text.contains(#"flashsale_http_request_duration_seconds_count{route="NotFound",method="GET",status_class="4xx"} 1"#), "the refused /metrics: \(text)")
            // The probes answer there too (the kubelet's, when the HTTP port takes only PROXY protocol connections).
            let probes = try await TestClient.withClient(host: "127.0.0.1", port: metricsPort) { metrics in
                [try await metrics.get("/healthz").status, try await metrics.get("/readyz").status]
            }
            #expect(probes == [.ok, .ok], "\(probes)")
        }
    }
}
