import Hummingbird

/// JSON written by hand for the shapes every order produces (the 201 and 202 answers, the delivery details
/// sealed into the ledger): the same bytes as `JSONEncoder` with sorted keys and unescaped slashes, without
/// its reflection and boxing, which cost about as much as the rest of the answer. `JSONTextTests` holds it to
/// `JSONEncoder`'s output.
enum JSONText {
    /// `value` as a JSON string literal, quotes included.
    static func quoted(_ value: String) -> String { "\"" + value.jsonEscaped + "\"" }

    /// A JSON answer (`application/json`, not cached) from text already written.
    static func response(status: HTTPResponse.Status, _ json: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}

extension OrderResponse {
    /// The order as `jsonResponse` would write it (without `delivery`, which the order answer never carries).
    var jsonText: String {
        precondition(delivery == nil, "the hand-written answer has no delivery member")
        return #"{"createdAt":"# + JSONText.quoted(createdAt) + #","customerId":"# + JSONText.quoted(customerId)
            + #","orderId":"# + JSONText.quoted(orderId) + #","quantity":"# + String(quantity)
            + #","saleId":"# + JSONText.quoted(saleId) + #","status":"# + JSONText.quoted(status) + "}"
    }
}

extension WaitlistedResponse {
    var jsonText: String { #"{"position":"# + String(position) + #","status":"# + JSONText.quoted(status) + "}" }
}

extension OrderBody.Delivery {
    /// The details as sealed into the ledger (opened with `JSONDecoder`).
    var jsonText: String {
        #"{"address":"# + JSONText.quoted(address) + #","name":"# + JSONText.quoted(name) + #","phone":"# + JSONText.quoted(phone) + "}"
    }
}

extension String {
    /// The text escaped for use inside a JSON string literal (RFC 8259: `"`, `\` and control characters;
    /// the short forms where JSON has them, as `JSONEncoder` writes them).
    var jsonEscaped: String {
        // Most text (ids, timestamps, names) needs no escape: one pass over the UTF-8 bytes says so.
        let needsEscape = utf8.withContiguousStorageIfAvailable { bytes in
            bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        } ?? utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        guard needsEscape else { return self }
        var result = ""
        result.reserveCapacity(utf8.count)
        var start = unicodeScalars.startIndex
        var index = start
        while index != unicodeScalars.endIndex {
            let scalar = unicodeScalars[index]
            let escape: String?
            switch scalar {
            case "\"": escape = "\\\""
            case "\\": escape = "\\\\"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            case "\u{08}": escape = "\\b"
            case "\u{0C}": escape = "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                escape = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: escape = nil
            }
            if let escape {
                result.unicodeScalars.append(contentsOf: unicodeScalars[start..<index])
                result += escape
                start = unicodeScalars.index(after: index)
            }
            index = unicodeScalars.index(after: index)
        }
        result.unicodeScalars.append(contentsOf: unicodeScalars[start..<unicodeScalars.endIndex])
        return result
    }
}
