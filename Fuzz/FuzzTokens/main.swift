// libFuzzer target: the bearer-token verifier and the byte-level parsers under it (Base64URL, JSONObject).
// Any input must end in a principal or a 401 problem: never a crash, a hang or another status; a token
// that verifies must name a customer and carry the claims it was signed with.
import Crypto
import Foundation
@testable import HTTPFront
import Replication

private let secret = "fuzz-secret-0123456789abcdef"
private let tokens = BearerTokens(secret: secret)
private let now = Date(timeIntervalSince1970: 1_800_000_000)
private let validHeader = Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)
private let validClaims = Array(#"{"sub":"fuzz","exp":1900000000}"#.utf8)

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
    switch mode % 4 {
    case 0:
        // The raw bytes as a token (what an attacker controls in the header).
        check(tokens.verify(bytes: rest, nowSeconds: now.timeIntervalSince1970), claims: nil)
    case 1:
        // The bytes as the claims of a correctly signed token: the claims parser and the time checks.
        check(tokens.verify(signed(header: validHeader, claims: rest), now: now), claims: Array(rest))
    case 2:
        // The bytes as the header of a correctly signed token: the algorithm check.
        check(tokens.verify(signed(header: rest, claims: validClaims), now: now), claims: validClaims)
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
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOne)
}
