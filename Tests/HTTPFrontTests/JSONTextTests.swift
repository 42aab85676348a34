import Foundation
@testable import HTTPFront
import Replication
import HTTPTypes
import Hummingbird
import NIOCore
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

/// The order body read on bytes (`OrderBody.decode`) against `JSONDecoder` (`Request.decodeJSON`), the
/// reader the body had before: the same values where both accept, the same refusals and the same words.
@Suite("Order body reader")
struct OrderBodyReaderTests {
    static func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static let valid = [
        #"{"quantity":2,"delivery":{"name":"Ada","phone":"+44 20-7946 0000","address":"1 Main St"}}"#,
        #"  {"delivery":{"address":"x","phone":"123456","name":"n","extra":[1,{"a":[]}]},"quantity":1,"note":null} "#,
        #"{"quantity":-3,"delivery":{"name":"\u00e9\ud83d\ude00 \"q\" \\ \/","phone":"1","address":"tab\there"}}"#,
        #"{"quantity":1e2,"delivery":{"name":"jose\u0301","phone":"","address":""},"unknown":{"deep":{"deeper":true}}}"#,
        #"{"quantity":9007199254740991,"delivery":{"name":"a","phone":"b","address":"c"}}"#,
    ]

    // Refused by both, with the detail both give.
    static let refused: [(String, String)] = [
        ("", "a JSON body is required"),
        (#"{"quantity":1.5,"delivery":{"name":"a","phone":"b","address":"c"}}"#, "quantity must be a whole number"),
        (#"{"quantity":1e30,"delivery":{"name":"a","phone":"b","address":"c"}}"#, "quantity must be a whole number"),
        (#"{"quantity":"1","delivery":{"name":"a","phone":"b","address":"c"}}"#, "wrong type for quantity: expected a whole number"),
        (#"{"quantity":null,"delivery":{"name":"a","phone":"b","address":"c"}}"#, "null is not allowed for quantity"),
        (#"{"delivery":{"name":"a","phone":"b","address":"c"}}"#, "missing field quantity"),
        (#"{"quantity":1}"#, "missing field delivery"),
        (#"{"quantity":1,"delivery":"home"}"#, "wrong type for delivery: expected an object"),
        (#"{"quantity":1,"delivery":{"name":"a","phone":"b"}}"#, "missing field delivery.address"),
        (#"{"quantity":1,"delivery":{"name":7,"phone":"b","address":"c"}}"#, "wrong type for delivery.name: expected a string"),
        (#"{"quantity":1,"delivery":{"name":"a","phone":null,"address":"c"}}"#, "null is not allowed for delivery.phone"),
    ]

    // Not JSON, or not an object: both refuse in the same words.
    static let malformed = [
        "{", "[]", "null", "7", #"{"quantity":1}x"#, "{\"quantity\":1,\"delivery\":{\"name\":\"a\u{1}\"}}",
        #"{"quantity":1,"delivery":{"name":"\ud800"}}"#, String(repeating: "[", count: 40), #"{'quantity':1}"#,
        #"{"quantity":01,"delivery":{"name":"a","phone":"b","address":"c"}}"#,
    ]

    static func detail(_ body: () throws -> OrderBody) -> String? {
        do {
            _ = try body()
            return nil
        } catch let problem as Problem {
            #expect(problem.status == .badRequest && problem.code == "INVALID_REQUEST")
            return problem.detail
        } catch {
            Issue.record("not a problem: \(error)")
            return "?"
        }
    }

    @Test(arguments: valid)
    func acceptsWhatJSONDecoderAccepts(_ text: String) throws {
        let reference = try Request.decodeJSON(OrderBody.self, from: Self.body(text))
        #expect(try OrderBody.decode(Self.body(text)) == reference)
    }

    @Test func refusesWithTheSameWords() {
        for (text, detail) in Self.refused {
            #expect(Self.detail { try Request.decodeJSON(OrderBody.self, from: Self.body(text)) } == detail, "\(text)")
            #expect(Self.detail { try OrderBody.decode(Self.body(text)) } == detail, "\(text)")
        }
        for text in Self.malformed {
            let reference = Self.detail { try Request.decodeJSON(OrderBody.self, from: Self.body(text)) }
            #expect(reference != nil && Self.detail { try OrderBody.decode(Self.body(text)) } == reference, "\(text)")
        }
    }

    // Where the two differ, on purpose: the reader is strict RFC 8259 where JSONDecoder is lenient (a trailing
    // comma, a byte-order mark), refuses a repeated field (JSONDecoder keeps one of them), and
    // takes a whole number written with a fraction (1.0) as the quantity 1.
    @Test func documentedDifferences() throws {
        let delivery = #""delivery":{"name":"a","phone":"b","address":"c"}"#
        for text in ["{\"quantity\":1,\(delivery),}", "\u{FEFF}{\"quantity\":1,\(delivery)}",
                     "{\"quantity\":1,\"quantity\":2,\(delivery)}"] {
            #expect(Self.detail { try OrderBody.decode(Self.body(text)) } == "the body is not valid JSON (UTF-8), or repeats a field", "\(text)")
        }
        #expect(try OrderBody.decode(Self.body(#"{"quantity":1.0,"delivery":{"name":"a","phone":"b","address":"c"}}"#)).quantity == 1)
    }
}
