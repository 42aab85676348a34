import Foundation
import Hummingbird

extension Request {
    /// Collects the body (at most the context's 16 KiB) and decodes it; every failure is a problem.
    mutating func decodeBody<Body: Decodable>(_ type: Body.Type, context: FlashSaleRequestContext) async throws -> Body {
        try Self.decodeJSON(Body.self, from: try await collectBody(context: context))
    }

    /// Collects the body (at most the context's 16 KiB); 413 beyond, INVALID_REQUEST when it cannot be read.
    mutating func collectBody(context: FlashSaleRequestContext) async throws -> ByteBuffer {
        do {
            return try await collectBody(upTo: context.maxUploadSize)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw Problem.bodyTooLarge()
        } catch {
            throw Problem.invalidRequest("the request body could not be read")
        }
    }

    /// Decodes a collected body; every failure is INVALID_REQUEST with a reason (the fuzz targets hold
    /// this to any input: a value or a problem, nothing else).
    static func decodeJSON<Body: Decodable>(_ type: Body.Type, from buffer: ByteBuffer) throws -> Body {
        guard buffer.readableBytes > 0 else { throw Problem.invalidRequest("a JSON body is required") }
        do {
            return try JSONDecoder().decode(Body.self, from: Data(buffer.readableBytesView))
        } catch let problem as Problem {
            throw problem
        } catch let DecodingError.keyNotFound(key, context) {
            throw Problem.invalidRequest("missing field \(Self.path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(type, context) {
            throw Problem.invalidRequest("wrong type for \(Self.path(context.codingPath)): expected \(Self.describe(type))")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            // A number that does not fit the field (1.5 or 1e30 for a whole number).
            throw Problem.invalidRequest("wrong value for \(Self.path(context.codingPath)): expected a whole number in range")
        } catch let DecodingError.valueNotFound(_, context) {
            throw Problem.invalidRequest("null is not allowed for \(Self.path(context.codingPath))")
        } catch {
            throw Problem.invalidRequest("the body is not valid JSON (UTF-8)")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int64.Type: "a whole number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: "an object"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "the body" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Checks a string's length in UTF-8 bytes (API.md: every string limit counts bytes, so a "100-character"
/// field can never carry kilobytes of combining marks); INVALID_REQUEST names the field otherwise.
func requireLength(_ value: String, _ range: ClosedRange<Int>, field: String) throws {
    guard range.contains(value.utf8.count) else {
        throw Problem.invalidRequest("\(field) must be \(range.lowerBound) to \(range.upperBound) bytes of UTF-8")
    }
}

/// A phone number: digits with an optional leading `+`, spaces and dashes allowed between them, 6 to 20
/// bytes, at least 6 digits.
func requirePhone(_ value: String, field: String) throws {
    try requireLength(value, 6...20, field: field)
    let bytes = Array(value.utf8)
    let body = bytes.first == UInt8(ascii: "+") ? bytes.dropFirst() : bytes[...]
    let allowed = body.allSatisfy { ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "-") }
    let digits = body.filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }.count
    guard allowed, digits >= 6, body.first.map({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) == true else {
        throw Problem.invalidRequest("\(field) must be digits with an optional leading +, spaces or dashes between them, at least 6 digits")
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
