import Foundation

/// What every token's claims must say, whoever signed it (the HS256 secret or a key of the identity provider).
///
/// Always: `sub` of 1 to 256 bytes; `exp` a number, not passed; `nbf` and `iat`, when present, numbers not in
/// the future; 30 s of clock skew on each. With an issuer (`FLASHSALE_JWT_ISSUER`) `iss` must equal it; with an
/// audience (`FLASHSALE_JWT_AUDIENCE`) `aud` (a string, or an array of strings) must name it.
///
/// The `admin` scope grants the admin routes only from the admin issuer and audience when those are set
/// (`FLASHSALE_JWT_ADMIN_ISSUER`, `FLASHSALE_JWT_ADMIN_AUDIENCE`): the signer of customer tokens cannot mint an
/// admin by adding a scope. A token for the admin audience is accepted even without the customer audience.
public struct ClaimRules: Sendable, Hashable {
    public var issuer: String?
    public var audience: String?
    public var adminIssuer: String?
    public var adminAudience: String?

    public init(issuer: String? = nil, audience: String? = nil, adminIssuer: String? = nil, adminAudience: String? = nil) {
        self.issuer = issuer
        self.audience = audience
        self.adminIssuer = adminIssuer
        self.adminAudience = adminAudience
    }

    private static let timeClaims = ["nbf", "iat"]

    /// The principal the claims (a JSON object's bytes) name, or the reason for a 401.
    func principal(claimsBytes: [UInt8], nowSeconds: Double) -> Result<Principal, Problem> {
        guard let claims = JSONObject(claimsBytes) else {
            return .failure(.unauthorized("malformed token claims"))
        }
        guard case .string(let subject) = claims["sub"], !subject.isEmpty, subject.utf8.count <= 256 else {
            return .failure(.unauthorized("the token has no subject"))
        }
        guard case .number(let expiry) = claims["exp"] else {
            return .failure(.unauthorized("the token has no expiry"))
        }
        guard expiry + BearerTokens.leewaySeconds > nowSeconds else {
            return .failure(.unauthorized("the token expired"))
        }
        for name in Self.timeClaims {
            switch claims[name] {
            case nil: continue
            case .number(let seconds):
                guard seconds - BearerTokens.leewaySeconds <= nowSeconds else {
                    return .failure(.unauthorized(name == "nbf" ? "the token is not valid yet" : "the token was issued in the future"))
                }
            default:
                return .failure(.unauthorized("the token's \(name) is not a number"))
            }
        }
        var hasAdminScope = false
        switch claims["scope"] {
        case nil: break
        case .string(let scope): hasAdminScope = scope.split(separator: " ").contains("admin")
        default: return .failure(.unauthorized("the token's scope is not a string"))
        }
        let issuer: String?
        switch claims["iss"] {
        case nil: issuer = nil
        case .string(let value): issuer = value
        default: return .failure(.unauthorized("the token's iss is not a string"))
        }
        guard let audiences = Self.audiences(claims["aud"], claimsBytes: claimsBytes) else {
            return .failure(.unauthorized("the token's aud is not a string or an array of strings"))
        }
        let customerPasses = (self.issuer == nil || issuer == self.issuer) && (audience == nil || audiences.contains(audience!))
        let adminIssuer = self.adminIssuer ?? self.issuer
        let adminAudience = self.adminAudience ?? audience
        let adminPasses = hasAdminScope && (adminIssuer == nil || issuer == adminIssuer) && (adminAudience == nil || audiences.contains(adminAudience!))
        guard customerPasses || adminPasses else {
            if let expected = self.issuer, issuer != expected, adminIssuer == expected || !hasAdminScope {
                return .failure(.unauthorized("the token's issuer is not \(expected)"))
            }
            return .failure(.unauthorized("the token is not for this service (aud)"))
        }
        return .success(Principal(customerID: subject, isAdmin: adminPasses, expiresAtSeconds: expiry))
    }

    /// `aud` as RFC 7519 allows it: absent, one string, or an array of strings (read apart: ``JSONObject`` skips
    /// arrays). Nil when it is anything else.
    static func audiences(_ value: JSONObject.Value?, claimsBytes: [UInt8]) -> [String]? {
        switch value {
        case nil: return []
        case .string(let one): return [one]
        case .nested:
            guard let object = try? JSONSerialization.jsonObject(with: Data(claimsBytes)) as? [String: Any],
                  let list = object["aud"] as? [Any], list.count <= 32 else { return nil }
            let strings = list.compactMap { $0 as? String }
            return strings.count == list.count ? strings : nil
        default: return nil
        }
    }
}
