import ArgumentParser
import Foundation
import Replication

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Ledger maintenance.",
        subcommands: [RebuildCommand.self]
    )

    struct RebuildCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rebuild",
            abstract: "Rebuild a sale's Redis ledger from MongoDB after Redis lost it.",
            discussion: """
            Restores the sale's meta, sold, per-customer counts, orders, idempotency keys and order lists from \
            the `sales` and `orders` collections. Every unsold unit goes to the pool; leases and the waitlist \
            start empty. Refuses a sale that still has a live ledger unless --force (which replaces it).
            """
        )

        @Option(help: "The sale to rebuild.")
        var sale: String

        @Option(name: .customLong("redis-url"), help: "Ledger Redis (FLASHSALE_REDIS_URL, default redis://127.0.0.1:6379).")
        var redisURL: String?

        @Option(name: .customLong("mongo-uri"), help: "MongoDB holding the orders (MONGO_URI).")
        var mongoURI: String?

        @Flag(help: "Replace a live ledger (its state is lost).")
        var force = false

        func run() async throws {
            let (redis, mongo) = try maintenanceClients(redisURL: redisURL, mongoURI: mongoURI, purpose: "rebuild")
            defer {
                redis.shutdown()
                mongo.shutdown()
            }
            do {
                let report = try await LedgerRebuild(redis: redis, mongo: mongo).rebuild(saleID: sale, force: force)
                print("rebuilt \(report)")
            } catch {
                FileHandle.standardError.write(Data("flashsale ledger rebuild: \(error)\n".utf8))
                throw ExitCode(error.isLiveLedger ? 3 : 1)
            }
        }
    }
}

extension LedgerRebuild.Failure {
    var isLiveLedger: Bool {
        if case .liveLedger = self { return true }
        return false
    }
}

/// The ledger's Redis and MongoDB for a maintenance command (`ledger rebuild`, `orders reexport`): from its flags,
/// else the environment the service reads (FLASHSALE_REDIS_URL, the Sentinels or cluster nodes, the Redis login, MONGO_URI).
func maintenanceClients(redisURL: String?, mongoURI: String?, purpose: String) throws -> (RedisClient, MongoClient) {
    let environment = ProcessInfo.processInfo.environment
    guard let uri = mongoURI ?? environment["MONGO_URI"], !uri.isEmpty else {
        throw ValidationError("MONGO_URI (or --mongo-uri) must name the MongoDB that holds the orders")
    }
    var redisConfiguration = try RedisConfiguration(url: redisURL ?? environment["FLASHSALE_REDIS_URL"] ?? "redis://127.0.0.1:6379")
    if redisURL == nil { try redisConfiguration.applyTopology(from: environment) }
    try redisConfiguration.applyCredentials(from: environment)
    return (RedisClient(configuration: redisConfiguration, name: "redis-\(purpose)"), try MongoClient(uri: uri, appName: "flashsale-\(purpose)", threads: 1))
}
