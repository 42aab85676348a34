import ArgumentParser
import Foundation
import Replication

struct OrdersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orders",
        abstract: "The orders MongoDB keeps.",
        subcommands: [ReexportCommand.self]
    )

    struct ReexportCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reexport",
            abstract: "Write a live sale's orders, cancellations and sale document from the Redis ledger to MongoDB again.",
            discussion: """
            The step after MongoDB was restored from a dump older than the sale's last orders (docs/backup-and-restore.md). \
            Idempotent by _id: run it again at will. Ends with a count check (every order of the ledger in MongoDB); \
            exit 1 when it fails. A sale whose keys have left Redis has nothing to re-export (exit 3).
            """
        )

        @Option(help: "The sale to re-export.")
        var sale: String

        @Option(name: .customLong("redis-url"), help: "Ledger Redis (FLASHSALE_REDIS_URL, default redis://127.0.0.1:6379).")
        var redisURL: String?

        @Option(name: .customLong("mongo-uri"), help: "MongoDB to write the orders to (MONGO_URI).")
        var mongoURI: String?

        func run() async throws {
            let (redis, mongo) = try maintenanceClients(redisURL: redisURL, mongoURI: mongoURI, purpose: "reexport")
            defer {
                redis.shutdown()
                mongo.shutdown()
            }
            do {
                print(try await LedgerReexport(redis: redis, mongo: mongo).reexport(saleID: sale))
            } catch {
                FileHandle.standardError.write(Data("flashsale orders reexport: \(error)\n".utf8))
                if case .saleNotInLedger = error { throw ExitCode(3) }
                throw ExitCode(1)
            }
        }
    }
}
