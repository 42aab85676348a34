import ArgumentParser
import Foundation
import HTTPFront
import NIOHTTP1

struct LoadCommand: AsyncParsableCommand {
    enum Mode: String, ExpressibleByArgument, CaseIterable, Sendable {
        case flashCrowd = "flash-crowd"
        case closedLoop = "closed-loop"
        case openLoop = "open-loop"
    }

    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Generate load against a FlashSale instance and write a JSON and HTML report.",
        discussion: """
        flash-crowd: N virtual customers (each its own connection and token) wait for the opening, all order at \
        once, retry RETRY_LATER, follow waitlist positions, and stop when the sale closes.
        closed-loop: C connections order back to back as fresh customers for the duration.
        open-loop: a fixed arrival rate for the duration; latency counts from the intended send time.
        Every run is bounded by --max-seconds.
        Side by side (a Kubernetes Indexed Job, docs/rehearsal.md): N generators with --shard-count N and each its
        --shard-index (default $JOB_COMPLETION_INDEX) share the work (customers and rate divided, customer ids
        apart) against one --sale opening at --opens-at; `flashsale load merge` combines their reports.
        """,
        subcommands: [RunLoad.self, MergeReports.self],
        defaultSubcommand: RunLoad.self
    )
}

/// `flashsale load [run]`: one load generator.
struct RunLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Generate load and write a JSON and HTML report (the default).")
    typealias Mode = LoadCommand.Mode

    @Option(help: "Base URL of the instance.") var url = "http://127.0.0.1:8080"
    @Option(help: "flash-crowd, closed-loop or open-loop.") var mode: Mode = .flashCrowd
    @Option(help: "Virtual customers (flash-crowd).") var customers = 10_000
    @Option(help: "Concurrent connections (closed-loop).") var connections = 64
    @Option(help: "Arrivals per second (open-loop).") var rate: Double = 1_000
    @Option(name: .customLong("duration-seconds"), help: "Length of a loop run.") var durationSeconds: Double = 10
    @Option(name: .customLong("max-seconds"), help: "Hard bound on the whole run.") var maxSeconds: Double = 180
    @Option(help: "Use this existing sale instead of creating one.") var sale: String?
    @Option(help: "Stock of the created sale (flash-crowd; loop modes use 10,000,000).") var stock = 1_000
    @Option(help: "Per-customer limit of the created sale.") var limit = 2
    @Option(help: "Units per order.") var quantity = 1
    @Option(name: .customLong("starts-in-seconds"), help: "The created sale opens this long after the run starts.") var startsInSeconds = 5
    @Option(name: .customLong("jwt-secret"), help: "HS256 secret (FLASHSALE_JWT_SECRET) to sign customer tokens.") var jwtSecret: String?
    @Option(help: "Report path without extension (.json and .html are written).") var report: String?
    @Option(name: .customLong("tls-ca-file"), help: "PEM CA that signed an https:// instance's certificate (default: the system's roots).") var tlsCAFile: String?
    @Flag(name: .customLong("skip-ledger-check"), help: "Do not compare with the ledger (for a server on --order-path noop).")
    var skipLedgerCheck = false
    @Option(name: .customLong("shard-index"), help: "This generator's index among --shard-count (default: $JOB_COMPLETION_INDEX, else 0).")
    var shardIndex: Int?
    @Option(name: .customLong("shard-count"), help: "Generators run side by side: customers and --rate are divided among them.")
    var shardCount = 1
    @Option(name: .customLong("opens-at"), help: "Flash crowd on an existing --sale: its opening (RFC 3339), for every generator alike.")
    var opensAt: String?
    @Flag(name: .customLong("report-stdout"), help: "Also print the JSON report as one line starting with LOAD-REPORT (for collecting from pod logs).")
    var reportStdout = false

    /// This generator's shard: from the flag, else the Indexed Job's completion index.
    var shard: Int { shardIndex ?? Int(ProcessInfo.processInfo.environment["JOB_COMPLETION_INDEX"] ?? "") ?? 0 }
    /// This shard's part of `total`: the remainder goes to the first shards.
    func part(of total: Int) -> Int { total / shardCount + (shard < total % shardCount ? 1 : 0) }

    func validate() throws {
        guard customers >= 1, customers <= 50_000 else { throw ValidationError("--customers must be 1 to 50000") }
        guard connections >= 1, connections <= 10_000 else { throw ValidationError("--connections must be 1 to 10000") }
        guard rate > 0, rate <= 100_000 else { throw ValidationError("--rate must be in (0, 100000]") }
        guard durationSeconds > 0, maxSeconds > 0, maxSeconds <= 3_600 else { throw ValidationError("durations must be positive, --max-seconds at most 3600") }
        guard quantity >= 1, quantity <= limit else { throw ValidationError("--quantity must be 1 to --limit") }
        guard shardCount >= 1, shardCount <= 1_000 else { throw ValidationError("--shard-count must be 1 to 1000") }
        guard (0..<shardCount).contains(shard) else { throw ValidationError("--shard-index (or JOB_COMPLETION_INDEX) must be 0 to --shard-count - 1, got \(shard)") }
        guard shardCount == 1 || sale != nil else { throw ValidationError("--shard-count above 1 needs --sale: the generators must share one sale") }
        if let opensAt, ISO8601DateFormatter().date(from: opensAt) == nil { throw ValidationError("--opens-at must be an RFC 3339 time like 2026-12-24T00:00:00Z, got \(opensAt)") }
        guard opensAt == nil || (mode == .flashCrowd && sale != nil) else { throw ValidationError("--opens-at is for a flash crowd on an existing --sale") }
    }

    func run() async throws {
        guard let secret = jwtSecret ?? ProcessInfo.processInfo.environment["FLASHSALE_JWT_SECRET"], secret.utf8.count >= BearerTokens.minimumSecretBytes else {
            throw ValidationError("FLASHSALE_JWT_SECRET (or --jwt-secret) must be the server's secret")
        }
        let tokens = BearerTokens(secret: secret, rules: try ClaimRules(environment: ProcessInfo.processInfo.environment))
        let admin = tokens.sign(subject: "load-admin", admin: true, expiresAt: Date().addingTimeInterval(7_200))
        let customers = part(of: customers)
        let rate = rate / Double(shardCount)
        let connectionCount = mode == .flashCrowd ? max(1, customers) : (mode == .closedLoop ? connections : min(10_000, max(1, Int(rate))))
        let client = LoadClient(baseURL: url, connections: connectionCount, caFile: tlsCAFile)
        let origin = ContinuousClock.now
        let originUnixMilliseconds = Date().timeIntervalSince1970 * 1_000
        var configured = Scenarios(client: client, tokens: tokens, origin: origin, deadline: origin + .seconds(maxSeconds))
        if shardCount > 1 { configured.customerPrefix = "s\(shard)-" }
        let scenarios = configured

        let saleID: String
        if let sale {
            saleID = sale
        } else {
            saleID = try await createSale(client, admin: admin)
        }
        let started = ContinuousClock.now
        var records: [CustomerRecord] = []
        var openedAtMilliseconds: Double?
        var waitedForOpeningSeconds = 0.0
        switch mode {
        case .flashCrowd:
            // With --opens-at every generator wakes at the same wall-clock instant (plus 50 ms: just after the opening).
            let opensAt = self.opensAt.flatMap { ISO8601DateFormatter().date(from: $0) }
                .map { ContinuousClock.now + .milliseconds(Int64(max(0, $0.timeIntervalSinceNow) * 1_000) + 50) }
                ?? started + .milliseconds(Int64(startsInSeconds) * 1_000 + 50)
            openedAtMilliseconds = scenarios.milliseconds(since: opensAt)
            let wait = started.duration(to: opensAt)
            waitedForOpeningSeconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
            records = await withTaskGroup(of: CustomerRecord.self) { group in
                for index in 0..<customers {
                    group.addTask { await scenarios.flashCrowdCustomer(index: index, saleID: saleID, opensAt: opensAt, quantity: quantity) }
                }
                var all: [CustomerRecord] = []
                for await record in group { all.append(record) }
                return all
            }
        case .closedLoop:
            let end = ContinuousClock.now + .milliseconds(Int64(durationSeconds * 1_000))
            records = await withTaskGroup(of: [CustomerRecord].self) { group in
                for worker in 0..<connections {
                    group.addTask { await scenarios.closedLoopWorker(worker: worker, saleID: saleID, until: end, maxRequests: 1_000_000) }
                }
                var all: [CustomerRecord] = []
                for await part in group { all.append(contentsOf: part) }
                return all
            }
        case .openLoop:
            records = await scenarios.openLoop(saleID: saleID, ratePerSecond: rate, seconds: durationSeconds)
        }
        let elapsed = started.duration(to: .now)
        var seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if mode == .flashCrowd { seconds = max(0.001, seconds - waitedForOpeningSeconds) }

        let oversell = skipLedgerCheck ? nil : try? await oversellCheck(client, admin: admin, saleID: saleID, records: records)
        try await client.shutdown()
        let saleStock = mode == .flashCrowd ? oversell?.stock ?? stock : nil
        let built = LoadReport.build(mode: mode.rawValue, command: CommandLine.arguments.joined(separator: " "), records: records,
                                     durationSeconds: seconds, stock: saleStock, oversell: oversell, openedAtMilliseconds: openedAtMilliseconds,
                                     originUnixMilliseconds: originUnixMilliseconds, shard: "\(shard)/\(shardCount)")
        let path = report ?? "reports/load-\(mode.rawValue)-\(Int(Date().timeIntervalSince1970))"
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        try built.json().write(to: URL(fileURLWithPath: path + ".json"))
        try Data(built.html().utf8).write(to: URL(fileURLWithPath: path + ".html"))
        print(built.summaryText)
        print("report: \(path).json and \(path).html")
        if reportStdout { print("LOAD-REPORT " + String(decoding: try built.compactJSON(), as: UTF8.self)) }
        if oversell?.oversold == true || oversell?.invariantHolds == false {
            throw ValidationError("the ledger check failed: oversold or invariant broken")
        }
    }

    private func createSale(_ client: LoadClient, admin: String) async throws -> String {
        let id = "load-\(mode.rawValue)-\(Int(Date().timeIntervalSince1970))"
        let startsIn = mode == .flashCrowd ? startsInSeconds : 0
        let startsAt = ISO8601DateFormatter().string(from: Date().addingTimeInterval(Double(startsIn)))
        let saleStock = mode == .flashCrowd ? stock : 10_000_000
        let saleLimit = mode == .flashCrowd ? limit : 100
        let body = #"{"id":"\#(id)","name":"Load \#(mode.rawValue)","stock":\#(saleStock),"startsAt":"\#(startsAt)","durationSeconds":\#(Int(maxSeconds) + 60),"perCustomerLimit":\#(saleLimit)}"#
        let response = try await client.send(.POST, "/admin/sales", token: admin, json: body)
        guard response.status == 201 else { throw ValidationError("creating the sale failed: HTTP \(response.status) \(response.body)") }
        return id
    }

    private func oversellCheck(_ client: LoadClient, admin: String, saleID: String, records: [CustomerRecord]) async throws -> LoadReport.Oversell {
        let shards = try await client.send(.GET, "/admin/sales/\(saleID)/shards", token: admin)
        let stock = shards.body["stock"] as? Int ?? 0
        let sold = shards.body["sold"] as? Int ?? 0
        let pool = shards.body["pool"] as? Int ?? 0
        let leased = (shards.body["leases"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["remaining"] as? Int ?? 0) }
        let seen = records.reduce(0) { $0 + $1.confirmedUnits }
        return LoadReport.Oversell(stock: stock, sold: sold, soldSeenByCustomers: seen, pool: pool, leased: leased,
                                   invariantHolds: pool + leased + sold == stock, oversold: sold > stock || seen > sold)
    }
}
