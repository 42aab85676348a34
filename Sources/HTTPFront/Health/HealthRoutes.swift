import Hummingbird
import Replication

/// `/healthz` (the process answers) and `/readyz` (the ledger answers and its scripts are loaded).
/// Readiness depends on Redis only: while MongoDB is away orders wait safely in the outbox, so the
/// order store's state is reported in `details` but never makes the instance unready.
struct HealthRoutes: Sendable {
    let redis: RedisClient
    var drainer: OutboxDrainer?
    var mongoFailure: String?
    var durability: LedgerDurabilityMonitor?
    /// Readiness also requires the ledger scripts to be loaded on the server.
    var requireLedgerScripts = true

    func register(on router: Router<some RequestContext>) {
        router.get("healthz") { _, _ -> Response in
            JSONText.response(status: .ok, #"{"status":"ok"}"#)
        }
        router.get("readyz") { _, _ -> Response in
            await readiness()
        }
    }

    private func readiness() async -> Response {
        let requireLedgerScripts = requireLedgerScripts
        do {
            try await redis.withConnection { connection throws(RedisError) in
                try connection.send("PING").throwingServerError()
                if requireLedgerScripts { try Ledger(connection: connection).loadScripts() }
            }
            return JSONText.response(status: .ok, #"{"status":"ready","checks":{"redis":"ok"},"details":\#(details)}"#)
        } catch {
            let detail = String(describing: error).jsonEscaped
            return JSONText.response(status: .serviceUnavailable, #"{"status":"not_ready","checks":{"redis":"\#(detail)"},"details":\#(details)}"#)
        }
    }

    /// The ledger's durability and the order store's state as a JSON object.
    private var details: String {
        let ledger = durability.map { #""ledgerDurability":"\#(String(describing: $0.durability).jsonEscaped)","# } ?? ""
        guard let drainer else {
            if let mongoFailure {
                return #"{\#(ledger)"orderStore":"unusable MONGO_URI (\#(mongoFailure.jsonEscaped)): confirmed orders stay in the Redis outbox"}"#
            }
            return #"{\#(ledger)"orderStore":"MongoDB not configured: confirmed orders stay in the Redis outbox"}"#
        }
        let status = drainer.status
        let state = status.lastError == nil ? (status.lastSuccessAtMilliseconds == nil ? "starting" : "draining") : "retrying"
        var fields = [
            #""orderStore":"mongodb""#,
            #""outbox":"\#(state)""#,
            #""ordersWritten":\#(status.ordersWritten)"#,
            #""stockEventsWritten":\#(status.stockEventsWritten)"#,
            #""compensated":\#(status.compensated)"#,
            #""consecutiveFailures":\#(status.consecutiveFailures)"#,
            #""failingSales":\#(status.failingSales.count)"#,
            #""heldCancellations":\#(status.heldCancellations)"#,
        ]
        if let error = status.lastError { fields.append(#""lastError":"\#(error.jsonEscaped)""#) }
        if let success = status.lastSuccessAtMilliseconds { fields.append(#""lastSuccessAt":"\#(Timestamps.format(milliseconds: success))""#) }
        return "{" + ledger + fields.joined(separator: ",") + "}"
    }
}
