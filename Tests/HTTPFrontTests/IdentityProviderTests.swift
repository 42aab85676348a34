import Crypto
import CryptoExtras
import Foundation
@testable import HTTPFront
import Hummingbird
import HummingbirdTesting
import Replication
import Synchronization
import Testing

/// The shop's identity provider, made at test time: ES256, EdDSA and RS256 keys, a JWKS file of their public
/// halves, and tokens signed with each.
struct TestIdentityProvider {
    let es256 = P256.Signing.PrivateKey()
    let eddsa = Curve25519.Signing.PrivateKey()
    let rs256: _RSA.Signing.PrivateKey
    let directory: URL
    var jwksPath: String { directory.appendingPathComponent("jwks.json").path }
    static let issuer = "https://id.shop.test/"
    static let audience = "flashsale"
    static let adminAudience = "flashsale-admin"

    init() throws {
        rs256 = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func jwk(_ kid: String) throws -> [String: String] {
        switch kid {
        case "ec-1":
            let raw = es256.publicKey.rawRepresentation
            return ["kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                    "x": Base64URL.encode(Array(raw.prefix(32))), "y": Base64URL.encode(Array(raw.suffix(32)))]
        case "ed-1":
            return ["kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": Base64URL.encode(Array(eddsa.publicKey.rawRepresentation))]
        default:
            let primitives = try rs256.publicKey.getKeyPrimitives()
            return ["kty": "RSA", "kid": kid, "alg": "RS256", "n": Base64URL.encode(Array(primitives.modulus)),
                    "e": Base64URL.encode(Array(primitives.publicExponent))]
        }
    }

    /// Publishes these keys as the JWKS file.
    func publish(_ kids: [String]) throws {
        let keys = try kids.map { try jwk($0) }
        let data = try JSONSerialization.data(withJSONObject: ["keys": keys], options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: jwksPath), options: .atomic)
    }

    /// A token signed by `kid`'s key (its algorithm from the kid), with these claims over the defaults.
    func token(kid: String, algorithm: String? = nil, claims extra: [String: Any] = [:]) throws -> String {
        var claims: [String: Any] = ["sub": "ada", "iss": Self.issuer, "aud": Self.audience, "exp": Int(Date().timeIntervalSince1970) + 600]
        for (name, value) in extra { claims[name] = value }
        let alg = algorithm ?? ["ec-1": "ES256", "ed-1": "EdDSA"][kid] ?? "RS256"
        let header = try JSONSerialization.data(withJSONObject: ["alg": alg, "kid": kid, "typ": "JWT"], options: [.sortedKeys])
        let payload = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        let input = Base64URL.encode(Array(header)) + "." + Base64URL.encode(Array(payload))
        let signature: [UInt8]
        switch kid {
        case "ec-1": signature = Array(try es256.signature(for: Data(input.utf8)).rawRepresentation)
        case "ed-1": signature = Array(try eddsa.signature(for: Data(input.utf8)))
        default: signature = Array(try rs256.signature(for: SHA256.hash(data: Data(input.utf8)), padding: .insecurePKCS1v1_5).rawRepresentation)
        }
        return input + "." + Base64URL.encode(signature)
    }

    var rules: ClaimRules { ClaimRules(issuer: Self.issuer, audience: Self.audience, adminAudience: Self.adminAudience) }
}

@Suite("Tokens from the shop's identity provider: ES256, EdDSA and RS256 from a JWKS file")
struct IdentityProviderTests {
    static var now: Double { Date().timeIntervalSince1970 }

    @Test func eachAlgorithmVerifiesAndEachMistakeIsRefused() async throws {
        let provider = try TestIdentityProvider()
        defer { try? FileManager.default.removeItem(at: provider.directory) }
        try provider.publish(["ec-1", "ed-1", "rs-1"])
        let keys = try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules)
        let verifier = TokenVerifier(secret: nil, identityProvider: keys)
        for kid in ["ec-1", "ed-1", "rs-1"] {
            let principal = try await verifier.verify(try provider.token(kid: kid), nowSeconds: Self.now).get()
            #expect(principal.customerID == "ada" && !principal.isAdmin, "\(kid)")
        }
        func refusal(_ token: String) async -> String? {
            if case .failure(let problem) = await verifier.verify(token, nowSeconds: Self.now) { return problem.detail }
            return nil
        }
        let good = try provider.token(kid: "ec-1")
        let tampered = good.dropLast(4) + (good.hasSuffix("AAAA") ? "BBBB" : "AAAA")
        #expect(await refusal(String(tampered)) == "bad token signature")
        #expect(await refusal(try provider.token(kid: "ec-9"))?.contains("unknown signing key") == true)
        #expect(await refusal(try provider.token(kid: "ec-1", algorithm: "RS256"))?.contains("signs ES256") == true, "alg must match the key")
        #expect(await refusal(try provider.token(kid: "ec-1", algorithm: "HS256"))?.contains("HS256") == true, "no HS256 without a secret")
        #expect(await refusal(try provider.token(kid: "ec-1", algorithm: "none"))?.contains("unsupported") == true)
        #expect(await refusal(try provider.token(kid: "ed-1", claims: ["iss": "https://evil.test/"]))?.contains("issuer") == true)
        #expect(await refusal(try provider.token(kid: "ed-1", claims: ["aud": "another-service"]))?.contains("aud") == true)
        #expect(await refusal(try provider.token(kid: "ed-1", claims: ["aud": ["another", "flashsale"]])) == nil, "aud as an array")
        #expect(await refusal(try provider.token(kid: "rs-1", claims: ["exp": Int(Self.now) - 120]))?.contains("expired") == true)
        // The customer-token signer cannot mint admins: the admin scope counts only with the admin audience.
        let scoped = try await verifier.verify(try provider.token(kid: "ec-1", claims: ["scope": "admin"]), nowSeconds: Self.now).get()
        #expect(!scoped.isAdmin)
        let admin = try await verifier.verify(try provider.token(kid: "ec-1", claims: ["scope": "admin", "aud": TestIdentityProvider.adminAudience]),
                                              nowSeconds: Self.now).get()
        #expect(admin.isAdmin)
        #expect(await refusal(try provider.token(kid: "ec-1", claims: ["aud": TestIdentityProvider.adminAudience])) != nil,
                "the admin audience without the admin scope is no customer token either")
    }

    // Keys rotate without a restart: a new file is read within about a second; the old key stops verifying.
    @Test func keysRotateWithTheFile() async throws {
        let provider = try TestIdentityProvider()
        defer { try? FileManager.default.removeItem(at: provider.directory) }
        try provider.publish(["ec-1"])
        let reloads = ReloadLog()
        let keys = try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules) { reloads.note($0) }
        let verifier = TokenVerifier(secret: nil, identityProvider: keys)
        #expect(await verifier.verify(try provider.token(kid: "ec-1"), nowSeconds: Self.now).isSuccess)
        #expect(!(await verifier.verify(try provider.token(kid: "ed-1"), nowSeconds: Self.now).isSuccess))
        try provider.publish(["ed-1"])
        var rotated = false
        for _ in 0..<40 where !rotated {
            try await Task.sleep(for: .milliseconds(100))
            rotated = await verifier.verify(try provider.token(kid: "ed-1"), nowSeconds: Self.now).isSuccess
        }
        #expect(rotated, "the new key verifies after the file changed")
        #expect(!(await verifier.verify(try provider.token(kid: "ec-1"), nowSeconds: Self.now).isSuccess), "the dropped key no longer does")
        // A broken file keeps the last good keys.
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: provider.jwksPath))
        try await Task.sleep(for: .milliseconds(1_200))
        #expect(await verifier.verify(try provider.token(kid: "ed-1"), nowSeconds: Self.now).isSuccess)
        #expect(reloads.failures >= 1 && reloads.successes >= 1)
    }

    // Mounted from a Kubernetes ConfigMap or Secret, the file is a symbolic link through `..data`, which the kubelet
    // points at a new directory on every update: the update is read.
    @Test func keysRotateThroughAVolumesLinks() async throws {
        let provider = try TestIdentityProvider()
        defer { try? FileManager.default.removeItem(at: provider.directory) }
        let files = FileManager.default
        let volume = provider.directory.appendingPathComponent("volume")
        func write(version: String, kid: String) throws {
            let directory = volume.appendingPathComponent("..\(version)")
            try files.createDirectory(at: directory, withIntermediateDirectories: true)
            try JSONSerialization.data(withJSONObject: ["keys": [try provider.jwk(kid)]]).write(to: directory.appendingPathComponent("jwks.json"))
            // The kubelet's swap: a new link, renamed over `..data` (atomic).
            let staging = volume.appendingPathComponent("..data_tmp").path
            try? files.removeItem(atPath: staging)
            try files.createSymbolicLink(atPath: staging, withDestinationPath: "..\(version)")
            guard rename(staging, volume.appendingPathComponent("..data").path) == 0 else { throw CocoaError(.fileWriteUnknown) }
        }
        try files.createDirectory(at: volume, withIntermediateDirectories: true)
        try write(version: "2026_12_06_1", kid: "ec-1")
        let path = volume.appendingPathComponent("jwks.json").path
        try files.createSymbolicLink(atPath: path, withDestinationPath: "..data/jwks.json")
        let keys = try await IdentityProviderKeys(path: path, rules: provider.rules)
        let verifier = TokenVerifier(secret: nil, identityProvider: keys)
        #expect(await verifier.verify(try provider.token(kid: "ec-1"), nowSeconds: Self.now).isSuccess)
        try write(version: "2026_12_06_2", kid: "rs-1")
        var rotated = false
        for _ in 0..<40 where !rotated {
            try await Task.sleep(for: .milliseconds(100))
            rotated = await verifier.verify(try provider.token(kid: "rs-1"), nowSeconds: Self.now).isSuccess
        }
        #expect(rotated, "the volume's update is read")
        #expect(keys.keyIDs == ["rs-1"])
    }

    @Test func unusableFilesStopTheStart() async throws {
        let provider = try TestIdentityProvider()
        defer { try? FileManager.default.removeItem(at: provider.directory) }
        await #expect(throws: IdentityProviderKeys.LoadError.self) { try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules) }
        for keys in [#"{"keys":[]}"#, #"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
                     #"{"keys":[{"kty":"EC","crv":"P-384","kid":"p","x":"AA","y":"AA"}]}"#] {
            try Data(keys.utf8).write(to: URL(fileURLWithPath: provider.jwksPath))
            await #expect(throws: IdentityProviderKeys.LoadError.self, "\(keys)") {
                try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules)
            }
        }
        // A provider's set with keys this service does not use: those are skipped, the others verify.
        let mixed: [[String: String]] = [try provider.jwk("ec-1"), ["kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"],
                                         ["kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"], ["kty": "oct", "kid": "h", "k": "c2VjcmV0"]]
        try JSONSerialization.data(withJSONObject: ["keys": mixed]).write(to: URL(fileURLWithPath: provider.jwksPath))
        let keys = try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules)
        #expect(keys.keyIDs == ["ec-1"] && keys.skippedKeys.count == 3, "\(keys.keyIDs) skipped \(keys.skippedKeys)")
        #expect(await TokenVerifier(secret: nil, identityProvider: keys).verify(try provider.token(kid: "ec-1"), nowSeconds: Self.now).isSuccess)
        var privateKey = try provider.jwk("ed-1")
        privateKey["d"] = Base64URL.encode(Array(provider.eddsa.rawRepresentation))
        try JSONSerialization.data(withJSONObject: ["keys": [privateKey]]).write(to: URL(fileURLWithPath: provider.jwksPath))
        await #expect(throws: IdentityProviderKeys.LoadError.self, "a private key is refused") {
            try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules)
        }
    }

    // On the live server: an ES256 customer orders, an EdDSA admin creates the sale, an HS256 token is refused when
    // the service takes the provider's tokens only.
    @Test func theLiveServerTakesTheProvidersTokens() async throws {
        let provider = try TestIdentityProvider()
        defer { try? FileManager.default.removeItem(at: provider.directory) }
        try provider.publish(["ec-1", "ed-1"])
        let keys = try await IdentityProviderKeys(path: provider.jwksPath, rules: provider.rules)
        let fixture = try HTTPFixture()
        try await fixture.components { $0.jwtSecret = nil; $0.identityProvider = keys; $0.claimRules = provider.rules }.application.test(.live) { client in
            let admin = try provider.token(kid: "ed-1", claims: ["sub": "ops", "scope": "admin", "aud": TestIdentityProvider.adminAudience])
            let startsAt = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-1))
            try await client.execute(uri: "/admin/sales", method: .post, headers: [.authorization: "Bearer " + admin, .contentType: "application/json"],
                                     body: ByteBuffer(string: #"{"id":"idp","name":"Phones","stock":3,"startsAt":"\#(startsAt)","durationSeconds":600}"#)) {
                #expect($0.status == .created, "\(String(buffer: $0.body))")
            }
            let customer = try provider.token(kid: "ec-1", claims: ["sub": "grace"])
            try await client.execute(uri: "/sales/idp/orders", method: .post, headers: [.authorization: "Bearer " + customer, .contentType: "application/json"],
                                     body: ByteBuffer(string: HTTPFixture.orderBody)) {
                #expect($0.status == .created, "\(String(buffer: $0.body))")
                #expect((json($0)["customerId"] as? String) == "grace")
            }
            try await client.execute(uri: "/sales/idp", method: .get, headers: fixture.headers("mallory")) {
                expectProblem($0, .unauthorized, "UNAUTHORIZED")
            }
        }
    }
}

final class ReloadLog: Sendable {
    private let counts = Mutex((successes: 0, failures: 0))
    func note(_ result: Result<Int, IdentityProviderKeys.LoadError>) {
        counts.withLock { if case .success = result { $0.successes += 1 } else { $0.failures += 1 } }
    }
    var successes: Int { counts.withLock { $0.successes } }
    var failures: Int { counts.withLock { $0.failures } }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
