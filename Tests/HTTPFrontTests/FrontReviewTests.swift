import Foundation
import HTTPTypes
@testable import HTTPFront
import Hummingbird
import HummingbirdTesting
import Replication
import Testing
import TestSupport

@Suite("The front's review: bounded memory per made-up sale, a throttled readiness probe, HS256 issuer and audience")
struct FrontReviewTests {
    // Orders for sales that do not exist, with an Idempotency-Key over the limit, leave nothing behind (each used to
    // add a rejections entry for good).
    @Test func madeUpSalesLeaveNothing() async throws {
        let fixture = try HTTPFixture()
        let components = fixture.components()
        let engine = components.engine
        try await components.application.test(.router) { client in
            let longKey = String(repeating: "k", count: 65)
            for index in 0..<200 {
                var headers = fixture.headers("prober")
                headers[HTTPField.Name("Idempotency-Key")!] = longKey
                try await client.execute(uri: "/sales/made-up-\(index)/orders", method: .post, headers: headers,
                                         body: ByteBuffer(string: HTTPFixture.orderBody)) { response in
                    #expect(response.status == .badRequest)
                }
            }
            #expect(engine.salesWithRejections == 0, "no counts kept for sales that do not exist")
            // A real sale still counts its rejections (until the reconcile takes them).
            try await fixture.createSale(client, id: "real", stock: 3)
            var headers = fixture.headers("prober")
            headers[HTTPField.Name("Idempotency-Key")!] = longKey
            try await client.execute(uri: "/sales/real/orders", method: .post, headers: headers, body: ByteBuffer(string: HTTPFixture.orderBody)) {
                #expect($0.status == .badRequest)
            }
        }
    }

    // However often /readyz is called, Redis is asked at most about twice a second.
    @Test func readinessIsProbedAtMostTwiceASecond() async throws {
        let fixture = try HTTPFixture()
        @Sendable func pings() throws -> Int {
            guard case .bulk(let bytes) = try fixture.redis.connect().send("INFO", "commandstats") else { return -1 }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_ping:") }),
                  let calls = line.split(separator: ",").first?.split(separator: "=").last else { return 0 }
            return Int(calls) ?? -1
        }
        try await fixture.components().application.test(.live) { client in
            let before = try pings()
            let started = Date()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<100 {
                            try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .ok) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = Date().timeIntervalSince(started)
            let probes = try pings() - before
            #expect(probes >= 1 && Double(probes) <= seconds * 2 + 2, "\(probes) pings for 400 calls in \(seconds) s")
        }
    }

    // With an issuer and audience required, HS256 tokens carry them (`flashsale token` writes them) or are refused.
    @Test func hs256TokensCarryTheIssuerAndAudience() throws {
        let rules = ClaimRules(issuer: "https://shop.test/", audience: "flashsale", adminAudience: "flashsale-admin")
        let tokens = BearerTokens(secret: String(repeating: "s", count: 32), rules: rules)
        let customer = try tokens.verify(tokens.sign(subject: "ada", admin: false, expiresAt: Date().addingTimeInterval(60))).get()
        #expect(customer.customerID == "ada" && !customer.isAdmin)
        let admin = try tokens.verify(tokens.sign(subject: "ops", admin: true, expiresAt: Date().addingTimeInterval(60))).get()
        #expect(admin.isAdmin)
        let bare = BearerTokens(secret: String(repeating: "s", count: 32))
        let unmarked = bare.sign(subject: "eve", admin: true, expiresAt: Date().addingTimeInterval(60))
        guard case .failure(let problem) = tokens.verify(unmarked) else { Issue.record("a token without iss is accepted"); return }
        #expect(problem.detail.contains("issuer"), "\(problem.detail)")
    }
}
