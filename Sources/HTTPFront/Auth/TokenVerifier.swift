import Foundation
import Replication

/// Every way a bearer token can be signed, behind one call: HS256 with the shared secret (local use,
/// `flashsale token`, the load generator) on the byte-level fast path, and the identity provider's ES256,
/// RS256 and EdDSA keys (a JWKS file) through jwt-kit. Which one is decided by the header's `alg`; a
/// service configured with only one of them refuses the other's tokens.
public struct TokenVerifier: Sendable {
    public let secret: BearerTokens?
    public let identityProvider: IdentityProviderKeys?

    public init(secret: BearerTokens?, identityProvider: IdentityProviderKeys? = nil) {
        precondition(secret != nil || identityProvider != nil, "a verifier needs a secret or an identity provider's keys")
        self.secret = secret
        self.identityProvider = identityProvider
    }

    /// The header segment of `token` is `alg: HS256` (the bytes `sign` writes, or a decoded header that says so).
    static func isHS256(_ token: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let dot = token.firstIndex(of: UInt8(ascii: ".")) else { return true }  // malformed: the fast path says why
        let segment = UnsafeBufferPointer(rebasing: token[..<dot])
        if segment.elementsEqual(BearerTokens.signedHeader) { return true }
        guard let bytes = Base64URL.decode(buffer: segment), let header = JSONObject(bytes) else { return true }
        return header["alg"] == .string("HS256")
    }

    /// Verifies a token's bytes (no copy on the HS256 path).
    public func verify(bytes token: UnsafeBufferPointer<UInt8>, nowSeconds: Double) -> Pending {
        if let secret, identityProvider == nil || Self.isHS256(token) {
            return .decided(secret.verify(bytes: token, nowSeconds: nowSeconds))
        }
        guard let identityProvider else { preconditionFailure("a verifier has a secret or an identity provider") }
        if Self.isHS256(token), token.count <= BearerTokens.maximumTokenBytes, token.contains(UInt8(ascii: ".")) {
            return .decided(.failure(.unauthorized("HS256 tokens are not accepted here: tokens come from the identity provider")))
        }
        return .identityProvider(identityProvider, String(decoding: token, as: UTF8.self))
    }

    /// A verification: decided at once (HS256), or waiting for the identity provider's keys.
    public enum Pending: Sendable {
        case decided(Result<Principal, Problem>)
        case identityProvider(IdentityProviderKeys, String)

        public func result(nowSeconds: Double) async -> Result<Principal, Problem> {
            switch self {
            case .decided(let result): result
            case .identityProvider(let keys, let token): await keys.verify(token, nowSeconds: nowSeconds)
            }
        }
    }

    /// The same on a string.
    public func verify(_ token: String, nowSeconds: Double) async -> Result<Principal, Problem> {
        var token = token
        let pending = token.withUTF8 { verify(bytes: $0, nowSeconds: nowSeconds) }
        return await pending.result(nowSeconds: nowSeconds)
    }
}
