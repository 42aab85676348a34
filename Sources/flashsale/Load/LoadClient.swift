import AsyncHTTPClient
import NIOSSL
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP answer as the load generator needs it.
/// `@unchecked Sendable`: `body` is a parsed JSON object that nobody mutates after parsing.
struct LoadResponse: @unchecked Sendable {
    let status: Int
    let body: [String: Any]
    let retryAfterSeconds: Int?
    let latencyNanoseconds: UInt64

    var code: String? { body["code"] as? String }
}

/// Thin wrapper over AsyncHTTPClient: JSON in and out, latency measured from `intendedStart`.
struct LoadClient: Sendable {
    let client: HTTPClient
    let baseURL: String
    static let timeout = TimeAmount.seconds(30)

    /// `caFile`: PEM roots to verify an HTTPS instance with (its own CA); nil: the system's roots.
    init(baseURL: String, connections: Int, caFile: String? = nil) {
        var configuration = HTTPClient.Configuration()
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            configuration.tlsConfiguration = tls
        }
        configuration.connectionPool = .init(idleTimeout: .seconds(120), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, connections))
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
    }

    func shutdown() async throws {
        try await client.shutdown()
    }

    /// Sends a request; latency counts from `intendedStart` (open loop: the scheduled send time).
    func send(_ method: HTTPMethod, _ path: String, token: String?, json: String? = nil, headers extra: [(String, String)] = [],
              intendedStart: ContinuousClock.Instant = .now) async throws -> LoadResponse {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer " + token) }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await client.execute(request, timeout: Self.timeout)
        let bytes = try await response.body.collect(upTo: 1 << 20)
        let elapsed = intendedStart.duration(to: .now)
        let nanoseconds = UInt64(max(0, elapsed.components.seconds)) * 1_000_000_000 + UInt64(max(0, elapsed.components.attoseconds / 1_000_000_000))
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
        return LoadResponse(
            status: Int(response.status.code),
            body: object,
            retryAfterSeconds: response.headers.first(name: "Retry-After").flatMap(Int.init),
            latencyNanoseconds: nanoseconds
        )
    }
}
