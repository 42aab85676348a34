import Foundation
import Hummingbird
import NIOCore
import Replication

/// The order route's pure steps, each callable on its own, next to the Foundation version it replaced:
/// the microbenchmarks (Benchmarks/FrontBenchmarks) measure both in one run.
public enum OrderPathSteps {
    /// Reads an order body on its bytes (``JSONObject``); answers its quantity, throws a ``Problem``.
    public static func decodeOrderBody(_ buffer: ByteBuffer) throws -> Int {
        try OrderBody.decode(buffer).quantity
    }

    /// The same with `JSONDecoder` (the reader the body had before).
    public static func decodeOrderBodyWithJSONDecoder(_ buffer: ByteBuffer) throws -> Int {
        try Request.decodeJSON(OrderBody.self, from: buffer).quantity
    }

    /// The 201 answer's body, written by hand.
    public static func orderAnswer(_ record: OrderRecord, saleID: String) -> ByteBuffer {
        ByteBuffer(string: OrderResponse(record, saleID: saleID).jsonText)
    }

    /// The same with `JSONEncoder` (sorted keys, unescaped slashes: the same bytes).
    public static func orderAnswerWithJSONEncoder(_ record: OrderRecord, saleID: String) throws -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return ByteBuffer(bytes: try encoder.encode(OrderResponse(record, saleID: saleID)))
    }
}
