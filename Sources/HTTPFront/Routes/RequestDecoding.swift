import Foundation
import Hummingbird

extension Request {
    /// Collects the body (at most the context's 16 KiB) and decodes it; every failure is a problem.
    mutating func decodeBody<Body: Decodable>(_ type: Body.Type, context: FlashSaleRequestContext) async throws -> Body {
        let buffer: ByteBuffer
        do {
            buffer = try await collectBody(upTo: context.maxUploadSize)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw Problem.bodyTooLarge()
        } catch {
            throw Problem.invalidRequest("the request body could not be read")
        }
        guard buffer.readableBytes > 0 else { throw Problem.invalidRequest("a JSON body is required") }
        do {
            return try JSONDecoder().decode(Body.self, from: Data(buffer.readableBytesView))
        } catch let DecodingError.keyNotFound(key, context) {
            throw Problem.invalidRequest("missing field \(Self.path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw Problem.invalidRequest("wrong type for \(Self.path(context.codingPath))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw Problem.invalidRequest("null is not allowed for \(Self.path(context.codingPath))")
        } catch {
            throw Problem.invalidRequest("the body is not valid JSON (UTF-8)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "the body" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Checks a string's length in characters; INVALID_REQUEST names the field otherwise.
func requireLength(_ value: String, _ range: ClosedRange<Int>, field: String) throws {
    guard range.contains(value.count) else {
        throw Problem.invalidRequest("\(field) must be \(range.lowerBound) to \(range.upperBound) characters")
    }
}

/// A JSON response with the given status.
func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    headers[.cacheControl] = "no-store"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
