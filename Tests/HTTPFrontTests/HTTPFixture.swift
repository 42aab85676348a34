import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import Logging
import Replication
import ReservationEngine
import Testing
import TestSupport

/// A real redis-server plus the real application, and helpers to talk to it.
struct HTTPFixture {
    static let secret = "http-test-secret-0123456789"
    let redis: RedisServer
    let tokens = BearerTokens(secret: HTTPFixture.secret)

    init() throws {
        redis = try RedisServer()
    }

    /// The data key of the test applications (fixed, so a test can open what it sealed).
    static let dataKey = try! FieldCipher.Key(id: "test1", base64: "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=")

    func components(customerRate: Double = 0, addressRate: Double = 0, orderPath: OrderPath = .engine, mongoURI: String? = nil,
                    idleTimeoutSeconds: Double = 60, configure: (inout ServerConfiguration) -> Void = { _ in }) -> FlashSaleApplication.Components {
        var logger = Logger(label: "http-test")
        logger.logLevel = .warning
        var engine = EngineConfiguration(instanceID: "http-test", leaseTTLMilliseconds: 1_000, leaseRenewMarginMilliseconds: 500,
                                         leaseSafetyMarginMilliseconds: 100, reconcileIntervalMilliseconds: 50)
        // The API tests reason about one lease of the adaptive share (CrowdTests and AdmissionTests cover
        // demand-sized leases).
        engine.leaseToDemand = false
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, redis: redis.configuration, jwtSecret: Self.secret,
                                                instanceID: "http-test", rateLimitPerCustomer: customerRate,
                                                rateLimitPerAddress: addressRate, engine: engine)
        configuration.orderPath = orderPath
        configuration.dataCipher = FieldCipher(sealing: Self.dataKey)
        configuration.mongoURI = mongoURI
        configuration.outbox.idlePollMilliseconds = 50
        configuration.idleTimeoutSeconds = idleTimeoutSeconds
        configure(&configuration)
        return FlashSaleApplication.Components(configuration: configuration, logger: logger)
    }

    func headers(_ customer: String, admin: Bool = false, json: Bool = true) -> HTTPFields {
        var headers = HTTPFields()
        headers[.authorization] = "Bearer " + tokens.sign(subject: customer, admin: admin, expiresAt: Date().addingTimeInterval(600))
        if json { headers[.contentType] = "application/json" }
        return headers
    }

    /// Creates a sale through the API; `startsIn` seconds from now.
    func createSale(_ client: some TestClientProtocol, id: String, stock: Int, limit: Int = 2, startsIn: Double = -1, durationSeconds: Int = 3_600) async throws {
        let startsAt = ISO8601DateFormatter().string(from: Date().addingTimeInterval(startsIn))
        let body = #"{"id":"\#(id)","name":"Phones","stock":\#(stock),"startsAt":"\#(startsAt)","durationSeconds":\#(durationSeconds),"perCustomerLimit":\#(limit)}"#
        try await client.execute(uri: "/admin/sales", method: .post, headers: headers("admin", admin: true), body: ByteBuffer(string: body)) { response in
            #expect(response.status == .created, "create sale: \(String(buffer: response.body))")
        }
    }

    static let orderBody = #"{"quantity":1,"delivery":{"name":"Ada Lovelace","phone":"+44 20 7946 0000","address":"12 St James's Square, London"}}"#

    static func orderBody(quantity: Int) -> ByteBuffer {
        ByteBuffer(string: #"{"quantity":\#(quantity),"delivery":{"name":"Ada","phone":"5550100","address":"1 Main St"}}"#)
    }

    func ledger(_ saleID: String) throws -> LedgerSnapshot {
        try LedgerFixture.snapshot(on: redis, saleID: saleID)
    }
}

func json(_ response: TestResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]) ?? [:]
}

/// Checks a problem response: status, code and content type.
func expectProblem(_ response: TestResponse, _ status: HTTPResponse.Status, _ code: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(response.status == status, "expected \(status.code) \(code), got \(response.status.code) \(String(buffer: response.body))", sourceLocation: sourceLocation)
    #expect(response.headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
    let body = json(response)
    #expect(body["code"] as? String == code, sourceLocation: sourceLocation)
    #expect(body["status"] as? Int == Int(status.code), sourceLocation: sourceLocation)
    #expect(body["title"] is String && body["detail"] is String && body["type"] is String, sourceLocation: sourceLocation)
}
