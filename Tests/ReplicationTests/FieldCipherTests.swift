import Crypto
import Foundation
@testable import Replication
import Testing

@Suite("Sealed fields and BSON")
struct FieldCipherTests {
    let key = FieldCipher.Key.generate(id: "k1").key

    @Test func sealsAndOpensBoundToItsContext() throws {
        let cipher = FieldCipher(sealing: key)
        let sealed = try cipher.seal(#"{"name":"Ada"}"#, context: "delivery/s/c1")
        #expect(sealed.hasPrefix("fs1.k1."))
        #expect(!sealed.contains("Ada"))
        #expect(try cipher.open(sealed, context: "delivery/s/c1") == #"{"name":"Ada"}"#)
        #expect(try cipher.seal("same", context: "x") != cipher.seal("same", context: "x"), "a fresh nonce per seal")
        #expect(throws: FieldCipherError.self) { try cipher.open(sealed, context: "delivery/s/c2") }
        var tampered = Array(sealed)
        tampered[tampered.count - 3] = tampered[tampered.count - 3] == "A" ? "B" : "A"
        #expect(throws: FieldCipherError.self) { try cipher.open(String(tampered), context: "delivery/s/c1") }
        #expect(throws: FieldCipherError.self) { try cipher.open("plain text", context: "delivery/s/c1") }
        // Any text, empty or not ASCII, with any context, opens to exactly what was sealed; a sealed value is
        // its head, then base64url of nonce (12), ciphertext (as long as the text) and tag (16).
        for (text, context) in [("", "c"), ("caf\u{E9} \u{1F600}", "d\u{E9}livery/s/\u{1F600}"), (String(repeating: "x", count: 1_000), "")] {
            let value = try cipher.seal(text, context: context)
            #expect(try cipher.open(value, context: context) == text)
            let body = value.dropFirst("fs1.k1.".count)
            #expect(Base64URL.decode(body.utf8)?.count == 12 + text.utf8.count + 16, "\(text.prefix(8))")
        }
    }

    // AES-GCM must never see a nonce twice under one key. Two tasks draw more than a page of the pool each
    // (341 nonces per 4 KiB), so their draws and refills interleave: every nonce is 12 bytes and unique.
    @Test func sealNoncesNeverRepeat() async throws {
        let drawn = try await withThrowingTaskGroup(of: [Data].self) { group in
            for _ in 0..<2 {
                group.addTask { try (0..<3_000).map { _ in try FieldCipher.freshNonce().withUnsafeBytes { Data($0) } } }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(drawn.count == 6_000 && drawn.allSatisfy { $0.count == 12 })
        #expect(Set(drawn).count == drawn.count)
    }

    @Test func rotatedKeysStillOpenOldValues() throws {
        let old = FieldCipher(sealing: key)
        let sealed = try old.seal("before rotation", context: "c")
        let newKey = FieldCipher.Key.generate(id: "k2").key
        let rotated = FieldCipher(sealing: newKey, retired: [key])
        #expect(try rotated.open(sealed, context: "c") == "before rotation")
        #expect(try rotated.seal("after", context: "c").hasPrefix("fs1.k2."))
        #expect(throws: FieldCipherError.self) { try FieldCipher(sealing: newKey).open(sealed, context: "c") }
    }

    @Test func rejectsBadKeys() {
        #expect(throws: FieldCipherError.self) { try FieldCipher.Key(id: "k1", base64: "c2hvcnQ=") }
        #expect(throws: FieldCipherError.self) { try FieldCipher.Key(id: "bad id", base64: String(repeating: "A", count: 44)) }
    }

    @Test func bsonRoundTripsThroughLibbson() {
        let document: BSONDocument = [
            "_id": "order-1", "n32": .int32(-7), "n64": .int64(1 << 40), "pi": .double(3.25), "ok": true, "none": .null,
            "at": .date(1_700_000_000_123), "oid": .objectID("5f1d7f3b2c9a4e6b8d0e1f2a"),
            "nested": .document(["list": .array([.int32(1), "two", .document(["three": .int64(3)])])]),
        ]
        let bson = document.makeBSON()
        defer { BSONDocument.destroy(bson) }
        #expect(BSONDocument(bson: bson) == document)
        #expect(BSONValue(json: #"{"b":true,"a":[1,2.5,"x",null]}"#) == .document(["a": .array([.int64(1), .double(2.5), "x", .null]), "b": true]))
    }
}
