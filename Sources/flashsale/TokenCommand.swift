import ArgumentParser
import Foundation
import HTTPFront

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a bearer token (HS256 JWT) for local use."
    )

    @Option(help: "The customer id (the token's sub).")
    var sub: String

    @Flag(help: "Grant the admin scope.")
    var admin = false

    @Option(name: .customLong("ttl-seconds"), help: "Lifetime in seconds.")
    var ttlSeconds: Int = 3_600

    @Option(name: .customLong("jwt-secret"), help: "HS256 secret (FLASHSALE_JWT_SECRET).")
    var jwtSecret: String?

    @Option(help: "The name shown on the sale page (the token's name claim).")
    var name: String?

    func validate() throws {
        guard !sub.isEmpty, sub.utf8.count <= 256 else { throw ValidationError("--sub must be 1 to 256 bytes") }
        guard ttlSeconds > 0, ttlSeconds <= 31_536_000 else { throw ValidationError("--ttl-seconds must be between 1 and 31536000") }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let secret = try BearerTokens.configuredSecret(jwtSecret ?? environment["FLASHSALE_JWT_SECRET"], required: true) else { return }
        // The issuer and audiences the service requires (FLASHSALE_JWT_ISSUER ...), so the token passes its checks.
        let tokens = BearerTokens(secret: secret, rules: try ClaimRules(environment: environment))
        print(tokens.sign(subject: sub, admin: admin, expiresAt: Date().addingTimeInterval(Double(ttlSeconds)), name: name))
    }
}
