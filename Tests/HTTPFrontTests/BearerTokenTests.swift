import Crypto
import Foundation
@testable import HTTPFront
import Replication
import Testing

@Suite("Bearer tokens: the byte-level HS256 verifier")
struct BearerTokenTests {
    static let secret = "token-test-secret-0123456789"
    let tokens = BearerTokens(secret: BearerTokenTests.secret)

    /// A token with exactly these header and claims bytes, signed with `secret`.
    static func token(header: String = #"{"alg":"HS256","typ":"JWT"}"#, claims: String, secret: String = BearerTokenTests.secret) -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        let signature = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return input + "." + Base64URL.encode(Array(signature))
    }

    static let now = 1_800_000_000.0
    static func at(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    // What `flashsale token` signs verifies, with the admin scope when asked for.
    @Test func signedTokensVerify() throws {
        let customer = try tokens.verify(tokens.sign(subject: "alice", admin: false, expiresAt: Date().addingTimeInterval(60))).get()
        #expect(customer.customerID == "alice" && !customer.isAdmin && customer.expiresAtSeconds > Date().timeIntervalSince1970)
        let admin = try tokens.verify(tokens.sign(subject: "root", admin: true, expiresAt: Date().addingTimeInterval(60))).get()
        #expect(admin.isAdmin)
    }

    // The header `sign` writes is recognised by its bytes; any other HS256 header is decoded and read. The
    // keyed HMAC state is shared by concurrent verifications, each on its own copy: every answer is right.
    @Test func otherHeadersAndConcurrentVerifications() async throws {
        #expect(Self.token(claims: "{}").hasPrefix(String(decoding: BearerTokens.signedHeader, as: UTF8.self) + "."))
        for header in [#"{"typ":"JWT","alg":"HS256"}"#, #"{"alg":"HS256"}"#, #" {"alg" : "HS256", "kid":"k1"}"#] {
            let token = Self.token(header: header, claims: #"{"sub":"a","exp":1800000100}"#)
            #expect((try? tokens.verify(token, now: Self.at(Self.now)).get())?.customerID == "a", "\(header)")
        }
        let tokens = self.tokens
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var wrong = 0
                    for index in 0..<250 {
                        let forged = index % 2 == 1
                        let claims = #"{"sub":"c\#(task)-\#(index)","exp":1800000100}"#
                        let token = Self.token(claims: claims, secret: forged ? "forged-secret-0123456789" : Self.secret)
                        let subject = try? tokens.verify(token, now: Self.at(Self.now)).get().customerID
                        if subject != (forged ? nil : "c\(task)-\(index)") { wrong += 1 }
                    }
                    return wrong
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
    }

    // Claims are read exactly: escapes decode, nested values are skipped, other scopes grant nothing.
    @Test func claimsAreReadExactly() throws {
        let escaped = Self.token(claims: #"{"sub":"jos\u00e9 \"q\" \ud83d\ude00","exp":1800000100,"scope":"read admin","extra":{"a":[1,2,{"b":null}]}}"#)
        let principal = try tokens.verify(escaped, now: Self.at(Self.now)).get()
        #expect(principal.customerID == "jos\u{e9} \"q\" \u{1F600}" && principal.isAdmin)
        let readOnly = Self.token(claims: #"{"sub":"bob","exp":1800000100,"scope":"administrator"}"#)
        #expect(try tokens.verify(readOnly, now: Self.at(Self.now)).get().isAdmin == false)
    }

    @Test(arguments: [
        // (claims, reason)
        (#"{"exp":1800000100}"#, "the token has no subject"),
        (#"{"sub":"","exp":1800000100}"#, "the token has no subject"),
        (#"{"sub":"a"}"#, "the token has no expiry"),
        (#"{"sub":"a","exp":"1800000100"}"#, "the token has no expiry"),
        (#"{"sub":"a","exp":1799999960}"#, "the token expired"),
        (#"{"sub":"a","exp":1800000100,"nbf":1800000031}"#, "the token is not valid yet"),
        (#"{"sub":"a","exp":1800000100,"iat":1800000100}"#, "the token was issued in the future"),
        (#"{"sub":"a","exp":1800000100,"iat":"yesterday"}"#, "the token's iat is not a number"),
        (#"{"sub":"a","exp":1800000100,"scope":["admin"]}"#, "the token's scope is not a string"),
        (#"{"sub":"a","sub":"b","exp":1800000100}"#, "malformed token claims"),
        (#"{"sub":"a","exp":1800000100} x"#, "malformed token claims"),
        (#"{"sub":"a","exp":01}"#, "malformed token claims"),
        (#"{"sub":"a\u0000b","exp":1800000100,"x":"\ud800"}"#, "malformed token claims"),
    ])
    func badClaimsAreRefused(claims: String, reason: String) {
        let result = tokens.verify(Self.token(claims: claims), now: Self.at(Self.now))
        guard case .failure(let problem) = result else { Issue.record("accepted: \(claims)"); return }
        #expect(problem.detail == reason, "\(claims)")
    }

    // Within the 30 s leeway, exp, nbf and iat pass; a sub over 256 bytes does not.
    @Test func leewayAndLimits() {
        let skewed = Self.token(claims: #"{"sub":"a","exp":1799999975,"nbf":1800000025,"iat":1800000025}"#)
        #expect((try? tokens.verify(skewed, now: Self.at(Self.now)).get()) != nil)
        let long = Self.token(claims: #"{"sub":"\#(String(repeating: "x", count: 257))","exp":1800000100}"#)
        #expect((try? tokens.verify(long, now: Self.at(Self.now)).get()) == nil)
    }

    // Only one form of a token is accepted: no padding, no standard alphabet, exactly three parts, HS256
    // only, the right key.
    @Test func oneFormOnly() {
        let good = Self.token(claims: #"{"sub":"a","exp":1800000100}"#)
        #expect((try? tokens.verify(good, now: Self.at(Self.now)).get()) != nil)
        let parts = good.split(separator: ".").map(String.init)
        let variants = [
            parts[0] + "=." + parts[1] + "." + parts[2],
            parts[0] + "." + parts[1] + "." + parts[2] + "=",
            parts[0] + "." + parts[1] + "." + parts[2].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/") + (parts[2].contains { $0 == "-" || $0 == "_" } ? "" : "+"),
            good + ".",
            parts[0] + "." + parts[1],
            Self.token(header: #"{"alg":"none"}"#, claims: #"{"sub":"a","exp":1800000100}"#),
            Self.token(header: #"{"alg":"HS512"}"#, claims: #"{"sub":"a","exp":1800000100}"#),
            Self.token(claims: #"{"sub":"a","exp":1800000100}"#, secret: "another-secret-0123456789"),
            String(repeating: "a", count: 9_000),
        ]
        for variant in variants {
            #expect((try? tokens.verify(variant, now: Self.at(Self.now)).get()) == nil, "\(variant.prefix(80))")
        }
    }

    // Base64url round trips every length, and rejects non-canonical or foreign input.
    @Test func base64URL() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let encoded = Base64URL.encode(bytes)
            #expect(!encoded.contains("=") && !encoded.contains("+") && !encoded.contains("/"))
            #expect(Base64URL.decode(Array(encoded.utf8)) == bytes)
            #expect(encoded == Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""))
        }
        #expect(Base64URL.decode(Array("QQ".utf8)) == [0x41])
        #expect(Base64URL.decode(Array("QR".utf8)) == nil, "non-zero trailing bits")
        #expect(Base64URL.decode(Array("Q".utf8)) == nil, "impossible length")
        #expect(Base64URL.decode(Array("QQ==".utf8)) == nil, "padding")
    }
}
