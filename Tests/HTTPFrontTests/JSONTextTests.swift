import Foundation
@testable import HTTPFront
import Replication
import Testing

/// The hand-written JSON of the order path is byte for byte what `JSONEncoder` writes.
@Suite("Hand-written JSON")
struct JSONTextTests {
    static let awkward = [
        "", "plain", "quote \" and backslash \\ and slash /", "tab\tnewline\nreturn\r", "\u{0}\u{1}\u{1F}\u{7F}",
        "\u{08}\u{0C}", "jos\u{E9} jose\u{301} \u{2126}\u{3A9}", "emoji 😀 and 𝄞", "\u{2028}\u{2029}", "<script>&amp;</script>",
        String(repeating: "ab\"", count: 100),
    ]

    static func encoded(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    @Test(arguments: awkward)
    func quotedStringsMatchTheEncoder(_ text: String) throws {
        #expect(JSONText.quoted(text) == (try Self.encoded([text])).dropFirst().dropLast())
        let decoded = try JSONDecoder().decode(String.self, from: Data(JSONText.quoted(text).utf8))
        #expect(decoded.unicodeScalars.elementsEqual(text.unicodeScalars), "round trip keeps every scalar")
    }

    @Test func orderPathShapesMatchTheEncoder() throws {
        for (index, text) in Self.awkward.enumerated() {
            let record = OrderRecord(orderID: "o-\(index)", customerID: text, quantity: index % 3 + 1,
                                     createdAtMilliseconds: 1_795_000_000_000 + Int64(index), status: .confirmed,
                                     idempotencyKey: "k", delivery: "", shardID: "", fence: 0, instanceID: "i", source: "test")
            let order = OrderResponse(record, saleID: "sale-\(index)")
            #expect(order.jsonText == (try Self.encoded(order)))
            let waitlisted = WaitlistedResponse(position: index * 1_000 + 1)
            #expect(waitlisted.jsonText == (try Self.encoded(waitlisted)))
            let delivery = OrderBody.Delivery(name: text, phone: "+44 \(index)", address: text + " street")
            #expect(delivery.jsonText == (try Self.encoded(delivery)))
            let reopened = try JSONDecoder().decode(OrderBody.Delivery.self, from: Data(delivery.jsonText.utf8))
            #expect(reopened.name.unicodeScalars.elementsEqual(text.unicodeScalars))
        }
    }
}
