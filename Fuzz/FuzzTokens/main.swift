// libFuzzer target: the bearer-token verifiers and the byte-level parsers under them (Base64URL, JSONObject):
// HS256 with the secret, and the identity provider's path (a JWKS file through jwt-kit, then the claim rules).
// Any input must end in a principal or a 401 problem: never a crash, a hang or another status; a token
// that verifies must name a customer and carry the claims it was signed with. A JWKS file's bytes load or are
// refused with a LoadError.
import Crypto
import Foundation
@testable import HTTPFront
import Replication

private let secret = "fuzz-secret-0123456789abcdef"
private let tokens = BearerTokens(secret: secret)
private let now = Date(timeIntervalSince1970: 1_800_000_000)
private let validHeader = Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)
private let validClaims = Array(#"{"sub":"fuzz","exp":1900000000}"#.utf8)

// The identity provider: one ES256 key, published in a JWKS file; the same verifier the service builds.
private let providerKey = P256.Signing.PrivateKey()
private let providerRules = ClaimRules(issuer: "https://id.fuzz.test/", audience: "flashsale")
private let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-jwks-\(getpid())")
private let jwksPath: String = {
    try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    let raw = providerKey.publicKey.rawRepresentation
    let jwks = #"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"\#(Base64URL.encode(Array(raw.prefix(32))))","y":"\#(Base64URL.encode(Array(raw.suffix(32))))"}]}"#
    let path = scratch.appendingPathComponent("jwks.json").path
    FileManager.default.createFile(atPath: path, contents: Data(jwks.utf8))
    return path
}()
private let provider: TokenVerifier = wait { TokenVerifier(secret: nil, identityProvider: try! await IdentityProviderKeys(path: jwksPath, rules: providerRules)) }
private let providerHeader = Array(#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#.utf8)
private let providerClaims = Array(#"{"sub":"fuzz","exp":1900000000,"iss":"https://id.fuzz.test/","aud":"flashsale"}"#.utf8)

/// Runs async work to its end from libFuzzer's synchronous callback.
private func wait<T: Sendable>(_ work: @escaping @Sendable () async -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    Task {
        box.value = await work()
        done.signal()
    }
    done.wait()
    return box.value!
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

/// `header.claims.signature`, signed with the identity provider's ES256 key.
private func signedByProvider(header: some Collection<UInt8>, claims: some Collection<UInt8>) -> String {
    let input = Base64URL.encode(header) + "." + Base64URL.encode(claims)
    let signature = (try? providerKey.signature(for: Data(input.utf8)).rawRepresentation) ?? Data()
    return input + "." + Base64URL.encode(Array(signature))
}

private func verifiedByProvider(_ token: String) -> Result<Principal, Problem> {
    wait { await provider.verify(token, nowSeconds: now.timeIntervalSince1970) }
}

/// `header.claims.signature`, signed with the verifier's key.
private func signed(header: some Collection<UInt8>, claims: some Collection<UInt8>) -> String {
    let input = Base64URL.encode(header) + "." + Base64URL.encode(claims)
    let signature = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: Array(secret.utf8)))
    return input + "." + Base64URL.encode(Array(signature))
}

private func check(_ result: Result<Principal, Problem>, claims: [UInt8]?) {
    switch result {
    case .success(let principal):
        precondition(!principal.customerID.isEmpty, "a verified token names its customer")
        if let claims {
            let parsed = JSONObject(claims)
            precondition(parsed?["sub"] == .string(principal.customerID), "the principal is the token's sub")
        }
    case .failure(let problem):
        precondition(problem.status == .unauthorized && problem.code == "UNAUTHORIZED", "a refused token is a 401: \(problem)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let mode = input.first else { return 0 }
    let rest = UnsafeBufferPointer(rebasing: input.dropFirst())
    switch mode % 8 {
    case 0:
        // The raw bytes as a token (what an attacker controls in the header).
        check(tokens.verify(bytes: rest, nowSeconds: now.timeIntervalSince1970), claims: nil)
    case 1:
        // The bytes as the claims of a correctly signed token: the claims parser and the time checks.
        check(tokens.verify(signed(header: validHeader, claims: rest), now: now), claims: Array(rest))
    case 2:
        // The bytes as the header of a correctly signed token: the algorithm check.
        check(tokens.verify(signed(header: rest, claims: validClaims), now: now), claims: validClaims)
    case 4:
        // The raw bytes as a token for the identity provider's verifier.
        check(verifiedByProvider(String(decoding: rest, as: UTF8.self)), claims: nil)
    case 5:
        // The bytes as the claims of a token the provider signed: the claim rules (iss, aud as string or array).
        check(verifiedByProvider(signedByProvider(header: providerHeader, claims: rest)), claims: Array(rest))
    case 6:
        // The bytes as the header of a token the provider signed: alg and kid against the key set.
        check(verifiedByProvider(signedByProvider(header: rest, claims: providerClaims)), claims: providerClaims)
    case 7:
        // The bytes as a JWKS file: keys load or the file is refused, nothing else.
        let path = scratch.appendingPathComponent("input.json").path
        FileManager.default.createFile(atPath: path, contents: Data(rest))
        let loaded: Bool = wait {
            do {
                _ = try await IdentityProviderKeys(path: path, rules: providerRules)
                return true
            } catch {
                return false
            }
        }
        _ = loaded
    default:
        // Base64URL round trip, and the JSON reader on its own.
        let encoded = Base64URL.encode(buffer: rest)
        precondition(Base64URL.decode(Array(encoded.utf8)) == Array(rest), "Base64URL round trip")
        _ = JSONObject(Array(rest))
    }
    return 0
}

// SwiftPM links an executable's entry point under this name; libFuzzer's driver runs from it.
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>, _ callback: FuzzCallback) -> Int32

@_cdecl("FuzzTokens_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    // The verifiers live for the whole run: made before the first input, so that LeakSanitizer, which checks
    // each input's allocations, does not count them against the input that happened to touch them first.
    _ = tokens
    _ = provider
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOne)
}
