import Crypto
import Foundation
import Replication

/// Who is calling: the token's `sub` and whether it carries the `admin` scope.
public struct Principal: Sendable, Hashable {
    public let customerID: String
    public let isAdmin: Bool
    /// The token's `exp` (seconds since 1970): a live socket is closed when it passes.
    public var expiresAtSeconds: Double = .infinity

    public init(customerID: String, isAdmin: Bool, expiresAtSeconds: Double = .infinity) {
        self.customerID = customerID
        self.isAdmin = isAdmin
        self.expiresAtSeconds = expiresAtSeconds
    }
}

/// HS256 JSON Web Tokens: signing (`flashsale token`) and verification (every route but health, metrics,
/// the OpenAPI document and the static page).
///
/// Verification works on the token's bytes: base64url without padding decoded by table, the header and
/// claims read by ``JSONObject``, one HMAC from a state keyed once (the key's inner and outer blocks are
/// hashed at start; each token copies that state). A header segment byte for byte equal to the one
/// ``sign(subject:admin:expiresAt:)`` writes is known to be `{"alg":"HS256","typ":"JWT"}` and is not decoded
/// again; any other header is decoded and read. Checks: `alg` HS256 only; `sub` 1 to 256 bytes; `exp`
/// required; `exp`, `nbf` and `iat` (when present) numbers, with 30 s of clock skew.
public struct BearerTokens: Sendable {
    /// Tolerated clock skew on `exp`, `nbf` and `iat`.
    public static let leewaySeconds: Double = 30
    /// Longest token accepted (bytes).
    public static let maximumTokenBytes = 8_192
    private let signingKey: SigningKey
    /// Issuer and audiences every token must carry (none by default).
    public let rules: ClaimRules

    /// `@unchecked Sendable`: the key and the keyed HMAC state are built once in `init` and never mutated
    /// afterwards; a verification mutates its own copy of `keyed` (copy on write: the copy's hash state is
    /// duplicated on its first update, since the template always holds a second reference).
    private struct SigningKey: @unchecked Sendable {
        let key: SymmetricKey
        let keyed: HMAC<SHA256>
    }

    /// The header segment ``sign(subject:admin:expiresAt:)`` writes.
    static let signedHeader = Array(Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)).utf8)
    private static let timeClaims = ["nbf", "iat"]

    private var key: SymmetricKey { signingKey.key }

    /// The shortest secret accepted (`FLASHSALE_JWT_SECRET`): 256 bits, the HMAC-SHA256 key size (RFC 7518 3.2).
    public static let minimumSecretBytes = 32

    public init(secret: String, rules: ClaimRules = ClaimRules()) {
        let key = SymmetricKey(data: Array(secret.utf8))
        self.signingKey = SigningKey(key: key, keyed: HMAC<SHA256>(key: key))
        self.rules = rules
    }

    /// A token for `subject`; with the rules' issuer and audience (the admin audience for an admin token when
    /// one is required), so that what `flashsale token` signs passes the same service's checks.
    public func sign(subject: String, admin: Bool, expiresAt: Date, name: String? = nil) -> String {
        var claims: [String: Any] = ["sub": subject, "exp": Int(expiresAt.timeIntervalSince1970), "iat": Int(Date().timeIntervalSince1970)]
        if admin { claims["scope"] = "admin" }
        if let name { claims["name"] = name }
        if admin, let issuer = rules.adminIssuer ?? rules.issuer { claims["iss"] = issuer } else if let issuer = rules.issuer { claims["iss"] = issuer }
        if admin, let audience = rules.adminAudience ?? rules.audience { claims["aud"] = audience } else if let audience = rules.audience { claims["aud"] = audience }
        let header = String(decoding: Self.signedHeader, as: UTF8.self)
        let payload = Base64URL.encode((try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) ?? Data())
        let signingInput = header + "." + payload
        let signature = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: key)
        return signingInput + "." + Base64URL.encode(Array(signature))
    }

    /// Verifies signature, algorithm and the time claims; returns the principal or a reason for a 401.
    public func verify(_ token: String, now: Date? = nil) -> Result<Principal, Problem> {
        let nowSeconds = (now ?? Timestamps.now).timeIntervalSince1970
        var token = token
        return token.withUTF8 { verify(bytes: $0, nowSeconds: nowSeconds) }
    }

    /// The same on a token's bytes (the HTTP layer passes the header's bytes without a copy).
    public func verify(bytes token: UnsafeBufferPointer<UInt8>, nowSeconds: Double) -> Result<Principal, Problem> {
        guard token.count <= Self.maximumTokenBytes else { return .failure(.unauthorized("token too long")) }
        guard let firstDot = token.firstIndex(of: UInt8(ascii: ".")),
              let secondDot = token[(firstDot + 1)...].firstIndex(of: UInt8(ascii: ".")),
              !token[(secondDot + 1)...].contains(UInt8(ascii: ".")),
              let payloadBytes = Base64URL.decode(buffer: UnsafeBufferPointer(rebasing: token[(firstDot + 1)..<secondDot])),
              let signature = Base64URL.decode(buffer: UnsafeBufferPointer(rebasing: token[(secondDot + 1)...]))
        else { return .failure(.unauthorized("malformed token")) }
        let headerSegment = UnsafeBufferPointer(rebasing: token[..<firstDot])
        if !headerSegment.elementsEqual(Self.signedHeader) {
            guard let headerBytes = Base64URL.decode(buffer: headerSegment) else { return .failure(.unauthorized("malformed token")) }
            guard let header = JSONObject(headerBytes), header["alg"] == .string("HS256") else {
                return .failure(.unauthorized("unsupported token algorithm (HS256 required)"))
            }
        }
        var mac = signingKey.keyed
        mac.update(data: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: token[..<secondDot])))
        guard mac.finalize() == signature else {
            return .failure(.unauthorized("bad token signature"))
        }
        return rules.principal(claimsBytes: payloadBytes, nowSeconds: nowSeconds)
    }
}
