import Crypto
import Foundation

/// Who is calling: the token's `sub` and whether it carries the `admin` scope.
public struct Principal: Sendable, Hashable {
    public let customerID: String
    public let isAdmin: Bool
}

/// HS256 JSON Web Tokens: signing (`flashsale token`) and verification (every route but health, metrics,
/// the OpenAPI document and the static page).
public struct BearerTokens: Sendable {
    /// Tolerated clock skew on `exp`.
    public static let leewaySeconds: Double = 30
    private let secret: Data
    private var key: SymmetricKey { SymmetricKey(data: secret) }

    public init(secret: String) {
        self.secret = Data(secret.utf8)
    }

    public func sign(subject: String, admin: Bool, expiresAt: Date) -> String {
        var claims: [String: Any] = ["sub": subject, "exp": Int(expiresAt.timeIntervalSince1970), "iat": Int(Date().timeIntervalSince1970)]
        if admin { claims["scope"] = "admin" }
        let header = Self.base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Self.base64URL((try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) ?? Data())
        let signingInput = header + "." + payload
        let signature = HMAC<SHA256>.authenticationCode(for: Data(signingInput.utf8), using: key)
        return signingInput + "." + Self.base64URL(Data(signature))
    }

    /// Verifies signature, algorithm and expiry; returns the principal or a reason for a 401.
    public func verify(_ token: String, now: Date? = nil) -> Result<Principal, Problem> {
        let now = now ?? Timestamps.now
        guard token.utf8.count <= 8_192 else { return .failure(.unauthorized("token too long")) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.decodeBase64URL(parts[0]), let payloadData = Self.decodeBase64URL(parts[1]),
              let signature = Self.decodeBase64URL(parts[2])
        else { return .failure(.unauthorized("malformed token")) }
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any], header["alg"] as? String == "HS256" else {
            return .failure(.unauthorized("unsupported token algorithm (HS256 required)"))
        }
        let signingInput = Data((parts[0] + "." + parts[1]).utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signingInput, using: key) else {
            return .failure(.unauthorized("bad token signature"))
        }
        guard let claims = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any] else {
            return .failure(.unauthorized("malformed token claims"))
        }
        guard let subject = claims["sub"] as? String, !subject.isEmpty, subject.utf8.count <= 256 else {
            return .failure(.unauthorized("the token has no subject"))
        }
        guard let expiry = (claims["exp"] as? NSNumber)?.doubleValue else {
            return .failure(.unauthorized("the token has no expiry"))
        }
        guard expiry + Self.leewaySeconds > now.timeIntervalSince1970 else {
            return .failure(.unauthorized("the token expired"))
        }
        let scopes = (claims["scope"] as? String ?? "").split(separator: " ")
        return .success(Principal(customerID: subject, isAdmin: scopes.contains("admin")))
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
