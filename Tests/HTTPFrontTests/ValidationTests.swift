import Foundation
import HTTPFront
import Hummingbird
import HummingbirdTesting
import Replication
import Testing
import TestSupport

@Suite("Input validation: bytes, time windows, phone numbers, number types")
struct ValidationTests {
    static func order(quantity: String = "1", name: String = "Ada", phone: String = "+44 20-7946 0000", address: String = "1 Main St") -> ByteBuffer {
        ByteBuffer(string: #"{"quantity":\#(quantity),"delivery":{"name":"\#(name)","phone":"\#(phone)","address":"\#(address)"}}"#)
    }

    // Each bad order is a 400 INVALID_REQUEST whose detail names the problem; nothing is reserved.
    @Test func badOrdersAreRefusedPrecisely() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            try await fixture.createSale(client, id: "valid", stock: 10, limit: 2)
            let cases: [(ByteBuffer, String)] = [
                (Self.order(quantity: "1.5"), "whole number"),
                (Self.order(quantity: "\"1\""), "expected a whole number"),
                (Self.order(phone: "call me!"), "delivery.phone must be digits"),
                (Self.order(phone: "12-34"), "delivery.phone must be 6 to 20 bytes"),
                (Self.order(phone: "+1 2 - - 3"), "delivery.phone must be digits"),
                // 60 characters, 120 bytes: over the 100-byte limit although under 100 characters.
                (Self.order(name: String(repeating: "\u{e9}", count: 60)), "delivery.name must be 1 to 100 bytes"),
                (Self.order(name: "a" + String(repeating: "\u{301}", count: 200)), "delivery.name must be 1 to 100 bytes"),
            ]
            for (body, detail) in cases {
                try await client.execute(uri: "/sales/valid/orders", method: .post, headers: fixture.headers("v"), body: body) { response in
                    expectProblem(response, .badRequest, "INVALID_REQUEST")
                    #expect((json(response)["detail"] as? String ?? "").contains(detail), "\(json(response)["detail"] ?? "")")
                }
            }
            try await client.execute(uri: "/sales/valid/orders", method: .post, headers: fixture.headers("v"), body: Self.order()) { response in
                #expect(response.status == .created, "a well-formed order still passes")
            }
            #expect(try fixture.ledger("valid").sold == 1)
        }
    }

    // A sale starts between now - 1 day and now + 1 year; year 0001 and 99999 are refused.
    @Test func saleStartWindow() async throws {
        let fixture = try HTTPFixture()
        try await fixture.components().application.test(.live) { client in
            let admin = fixture.headers("root", admin: true)
            for startsAt in ["0001-01-01T00:00:00Z", "+99999-01-01T00:00:00Z", "9999-01-01T00:00:00Z",
                             ISO8601DateFormatter().string(from: Date().addingTimeInterval(-2 * 86_400))] {
                let body = #"{"name":"Late","stock":5,"startsAt":"\#(startsAt)","durationSeconds":60}"#
                try await client.execute(uri: "/admin/sales", method: .post, headers: admin, body: ByteBuffer(string: body)) { response in
                    expectProblem(response, .badRequest, "INVALID_REQUEST")
                }
            }
            let soon = ISO8601DateFormatter().string(from: Date().addingTimeInterval(300 * 86_400))
            try await client.execute(uri: "/admin/sales", method: .post, headers: admin,
                                     body: ByteBuffer(string: #"{"name":"Later","stock":5,"startsAt":"\#(soon)","durationSeconds":60}"#)) { response in
                #expect(response.status == .created)
            }
        }
    }
}
