import Foundation
import JWTKit
import Replication
import Synchronization

/// The public keys of the shop's identity provider, from a JWKS file (`FLASHSALE_JWT_JWKS_FILE`): tokens signed
/// with ES256, RS256 or EdDSA, the key chosen by the token's `kid`. Signatures are checked by jwt-kit; the claims
/// by the same ``ClaimRules`` as HS256 tokens.
///
/// The file is read again when it changes (looked at no more than once a second, on verification; symbolic links
/// followed, so a Kubernetes ConfigMap or Secret volume's update counts), so keys rotate without a restart: the provider publishes the new key beside the old one, then drops the old one. A
/// file that stops parsing keeps the last good keys and is logged through `onReload`.
public final class IdentityProviderKeys: Sendable {
    /// The algorithms accepted, by their JOSE names.
    public static let algorithms: Set<String> = ["ES256", "RS256", "EdDSA"]
    /// Keys in one file at most (a provider publishes two or three while rotating).
    public static let maximumKeys = 64
    /// The file's size at most.
    public static let maximumFileBytes = 1 << 20

    public enum LoadError: Error, CustomStringConvertible {
        case unreadable(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .unreadable(let detail): "cannot read the JWKS file: \(detail)"
            case .invalid(let detail): "not a usable JWKS: \(detail)"
            }
        }
    }

    /// One version of the file: its keys by `kid` with their algorithm, and jwt-kit's collection of them.
    struct KeySet: Sendable {
        let algorithmByKeyID: [String: String]
        let collection: JWTKeyCollection
        let version: FileVersion
        /// Keys of the file not used, with why (an encryption key, another algorithm or curve).
        let skipped: [String]
    }

    /// What tells one version of the file from the next: the path its symbolic links lead to (a Kubernetes
    /// ConfigMap or Secret volume swaps a `..data` link to a new directory on every update), its modification
    /// time and its size.
    struct FileVersion: Equatable, Sendable {
        let resolvedPath: String
        let modified: Date?
        let size: Int

        init(path: String) {
            resolvedPath = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            let attributes = try? FileManager.default.attributesOfItem(atPath: resolvedPath)
            modified = attributes?[.modificationDate] as? Date
            size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
        }
    }

    private struct State {
        var keys: KeySet
        var checkedAtNanoseconds: UInt64
    }

    public let path: String
    private let rules: ClaimRules
    private let state: Mutex<State>
    private let onReload: @Sendable (Result<Int, LoadError>) -> Void

    /// Reads the file now: a file that cannot be used stops the start (thrown).
    public init(path: String, rules: ClaimRules, onReload: @escaping @Sendable (Result<Int, LoadError>) -> Void = { _ in }) async throws(LoadError) {
        self.path = path
        self.rules = rules
        self.onReload = onReload
        let keys = try await Self.load(path: path)
        state = Mutex(State(keys: keys, checkedAtNanoseconds: RateLimiter.monotonicNanoseconds()))
    }

    /// The key ids currently loaded.
    public var keyIDs: [String] { state.withLock { $0.keys.algorithmByKeyID.keys.sorted() } }
    /// The keys of the file not used, with why.
    public var skippedKeys: [String] { state.withLock { $0.keys.skipped } }

    static func load(path: String) async throws(LoadError) -> KeySet {
        let version = FileVersion(path: path)
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path) }
        guard data.count <= maximumFileBytes else { throw .invalid("larger than \(maximumFileBytes) bytes") }
        // Read key by key: a provider's set may hold keys this service does not verify with (encryption keys,
        // other algorithms or curves); those are skipped and named, the file is refused only when none is left.
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let entries = object["keys"] as? [Any] else {
            throw .invalid(#"not a JWKS ({"keys":[...]})"#)
        }
        guard !entries.isEmpty, entries.count <= maximumKeys else { throw .invalid("it must hold 1 to \(maximumKeys) keys") }
        let collection = JWTKeyCollection()
        var algorithms: [String: String] = [:]
        var skipped: [String] = []
        for (index, entry) in entries.enumerated() {
            guard let fields = entry as? [String: Any] else { throw .invalid("key \(index) is not an object") }
            guard let kid = fields["kid"] as? String, !kid.isEmpty else { throw .invalid("key \(index) has no kid") }
            guard fields["d"] == nil else { throw .invalid("key \(kid) is a private key: publish public keys only") }
            guard algorithms[kid] == nil else { throw .invalid("kid \(kid) appears twice") }
            if let use = fields["use"] as? String, use != "sig" {
                skipped.append("\(kid) (use \(use))")
                continue
            }
            guard let encoded = try? JSONSerialization.data(withJSONObject: fields), let jwk = try? JSONDecoder().decode(JWK.self, from: encoded) else {
                skipped.append("\(kid) (\(fields["kty"] as? String ?? "no kty"))")
                continue
            }
            let algorithm: String
            switch (jwk.keyType, jwk.algorithm ?? nil) {
            case (.ecdsa, let named) where (named == nil || named == .es256) && jwk.curve == .ecdsa(.p256): algorithm = "ES256"
            case (.rsa, let named) where named == nil || named == .rs256: algorithm = "RS256"
            case (.octetKeyPair, let named) where (named == nil || named == .eddsa) && jwk.curve == .eddsa(.ed25519): algorithm = "EdDSA"
            default:
                skipped.append("\(kid) (\(fields["kty"] as? String ?? "?") \(fields["crv"] as? String ?? fields["alg"] as? String ?? ""))")
                continue
            }
            var typed = jwk
            typed.algorithm = JWK.Algorithm(rawValue: algorithm)
            do {
                try await collection.add(jwk: typed)
            } catch {
                throw .invalid("key \(kid): \(error)")
            }
            algorithms[kid] = algorithm
        }
        guard !algorithms.isEmpty else {
            throw .invalid("no ES256 (P-256), RS256 or EdDSA (Ed25519) signing key; skipped \(skipped.joined(separator: ", "))")
        }
        return KeySet(algorithmByKeyID: algorithms, collection: collection, version: version, skipped: skipped)
    }

    /// The keys to verify with: the file is looked at again when the last look is a second old, and read again
    /// when it is another file (``FileVersion``).
    private func currentKeys() async -> KeySet {
        let now = RateLimiter.monotonicNanoseconds()
        let due: KeySet? = state.withLock { state in
            guard now &- state.checkedAtNanoseconds >= 1_000_000_000 else { return nil }
            state.checkedAtNanoseconds = now
            return state.keys
        }
        guard let known = due else { return state.withLock { $0.keys } }
        guard FileVersion(path: path) != known.version else { return known }
        do {
            let fresh = try await Self.load(path: path)
            state.withLock { $0.keys = fresh }
            onReload(.success(fresh.algorithmByKeyID.count))
            return fresh
        } catch {
            onReload(.failure(error))
            return known
        }
    }

    /// A payload jwt-kit decodes and does not judge: the claims are checked by ``ClaimRules`` on their bytes.
    private struct Unjudged: JWTPayload {
        init(from decoder: any Decoder) throws {}
        func encode(to encoder: any Encoder) throws {}
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// Verifies a token whose header names one of the accepted algorithms and a known `kid`.
    public func verify(_ token: String, nowSeconds: Double) async -> Result<Principal, Problem> {
        guard token.utf8.count <= BearerTokens.maximumTokenBytes else { return .failure(.unauthorized("token too long")) }
        let segments = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard segments.count == 3, let headerBytes = Base64URL.decode(segments[0]),
              let claimsBytes = Base64URL.decode(segments[1]),
              let header = JSONObject(headerBytes)
        else { return .failure(.unauthorized("malformed token")) }
        guard case .string(let algorithm) = header["alg"], Self.algorithms.contains(algorithm) else {
            return .failure(.unauthorized("unsupported token algorithm (ES256, RS256 or EdDSA from the identity provider)"))
        }
        guard case .string(let kid) = header["kid"] else { return .failure(.unauthorized("the token names no key (kid)")) }
        let keys = await currentKeys()
        guard let expected = keys.algorithmByKeyID[kid] else { return .failure(.unauthorized("unknown signing key \(kid)")) }
        guard expected == algorithm else { return .failure(.unauthorized("key \(kid) signs \(expected), not \(algorithm)")) }
        do {
            _ = try await keys.collection.verify(token, as: Unjudged.self)
        } catch {
            return .failure(.unauthorized("bad token signature"))
        }
        return rules.principal(claimsBytes: claimsBytes, nowSeconds: nowSeconds)
    }
}
