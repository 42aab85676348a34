import Foundation
@testable import HTTPFront
import Hummingbird
import HummingbirdTesting
import ReservationEngine
import Testing
import TestSupport

@Suite("Customer ids are bytes: look-alike customers are different customers")
struct LookAlikeCustomerTests {
    /// Canonically equivalent under Unicode (Swift `String ==` says equal), different as bytes.
    static let pairs: [(String, String)] = [
        ("jos\u{e9}", "jose\u{301}"),
        ("\u{3a9}mega", "\u{2126}mega"),
        ("\u{ac00}", "\u{1100}\u{1161}"),
    ]

    // Each pair: the second customer can neither read nor cancel the first one's order (404), and the
    // owner still can; the pairs really are equal to Swift's String == (or the test would prove nothing).
    @Test func ordersAreNotVisibleToALookAlike() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            try await fixture.createSale(client, id: "alike", stock: 10, limit: 1)
            for (owner, lookAlike) in Self.pairs {
                #expect(owner == lookAlike && !CustomerKey.same(owner, lookAlike), "\(owner.unicodeScalars.map(\.value)) vs \(lookAlike.unicodeScalars.map(\.value))")
                var orderID = ""
                try await client.execute(uri: "/sales/alike/orders", method: .post, headers: fixture.headers(owner), body: HTTPFixture.orderBody(quantity: 1)) { response in
                    #expect(response.status == .created)
                    orderID = json(response)["orderId"] as? String ?? ""
                }
                try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers(lookAlike)) { expectProblem($0, .notFound, "NOT_FOUND") }
                try await client.execute(uri: "/orders/\(orderID)", method: .delete, headers: fixture.headers(lookAlike)) { expectProblem($0, .notFound, "NOT_FOUND") }
                try await client.execute(uri: "/orders/\(orderID)", method: .get, headers: fixture.headers(owner)) { response in
                    #expect(response.status == .ok)
                    #expect(json(response)["delivery"] != nil, "the owner reads the delivery details")
                }
                // The look-alike is a customer of their own: their limit is untouched by the owner's order.
                try await client.execute(uri: "/sales/alike/orders", method: .post, headers: fixture.headers(lookAlike), body: HTTPFixture.orderBody(quantity: 1)) { response in
                    #expect(response.status == .created)
                }
            }
        }
    }

    // The rate limiter and the in-flight units count a look-alike separately.
    @Test func limitersKeepLookAlikesApart() {
        let limiter = RateLimiter(ratePerSecond: 1)
        for (owner, lookAlike) in Self.pairs {
            #expect(limiter.acquire(owner, nowNanoseconds: 1) == nil && limiter.acquire(owner, nowNanoseconds: 1) == nil)
            #expect(limiter.acquire(owner, nowNanoseconds: 1) != nil, "the owner's burst is spent")
            #expect(limiter.acquire(lookAlike, nowNanoseconds: 1) == nil, "the look-alike has a bucket of their own")
        }
        let inFlight = InFlightOrders<Int>()
        for (owner, lookAlike) in Self.pairs {
            #expect(inFlight.start(saleID: "s", customerID: owner, key: "", quantity: 1, limit: 1) == .lead)
            #expect(inFlight.start(saleID: "s", customerID: lookAlike, key: "", quantity: 1, limit: 1) == .lead)
            #expect(inFlight.pendingUnits(saleID: "s", customerID: owner) == 1 && inFlight.pendingUnits(saleID: "s", customerID: lookAlike) == 1)
        }
    }
}
