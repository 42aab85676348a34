import Hummingbird
import Replication
import Synchronization

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
    /// An instance told to stop is unready at once, whatever Redis says.
    var drain: DrainState?

    func register(on router: Router<some RequestContext>) {
        router.get("healthz") { _, _ -> Response in
            JSONText.response(status: .ok, #"{"status":"ok"}"#)
        }
        router.get("readyz") { _, _ -> Response in
            await readiness()
        }
    }

    /// The last probe of Redis: `/readyz` asks Redis at most once per ``ReadinessProbe/freshness`` however often it
    /// is called (a flood of `/readyz` must not crowd the ledger's connection nor fail the kubelet's probe).
    let probe = ReadinessProbe()

    private func readiness() async -> Response {
        if drain?.isDraining == true {
            return JSONText.response(status: .serviceUnavailable, #"{"status":"draining","checks":{},"details":\#(details)}"#)
        }
        let requireLedgerScripts = requireLedgerScripts
        let redis = redis
        let failure = await probe.result {
            do {
                try await redis.withConnection { connection throws(RedisError) in
                    try connection.send("PING").throwingServerError()
                    if requireLedgerScripts { try Ledger(connection: connection).loadScripts() }
                }
                return nil
            } catch {
                return String(describing: error)
            }
        }
        guard let failure else {
            return JSONText.response(status: .ok, #"{"status":"ready","checks":{"redis":"ok"},"details":\#(details)}"#)
        }
        return JSONText.response(status: .serviceUnavailable, #"{"status":"not_ready","checks":{"redis":"\#(failure.jsonEscaped)"},"details":\#(details)}"#)
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

/// A readiness check shared by every caller for ``freshness``: a result younger than that is answered as it is,
/// and while one caller probes, the others get the previous result instead of probing too.
final class ReadinessProbe: Sendable {
    static let freshnessNanoseconds: UInt64 = 500_000_000

    private struct State {
        /// nil: ready; otherwise why not.
        var last: String??
        var at: UInt64 = 0
        var probing = false
    }

    private let state = Mutex(State())
    /// Probes run (tests count them).
    let probes = Atomic(0)

    /// The failure (nil when ready), probing with `check` only when the last result is stale and nobody else probes.
    func result(_ check: @Sendable () async -> String?) async -> String? {
        let now = RateLimiter.monotonicNanoseconds()
        let cached: String?? = state.withLock { state in
            if let last = state.last, state.probing || now &- state.at < Self.freshnessNanoseconds { return .some(last) }
            state.probing = true
            return .none
        }
        if let cached { return cached }
        probes.add(1, ordering: .relaxed)
        let fresh = await check()
        state.withLock { state in
            state.last = .some(fresh)
            state.at = RateLimiter.monotonicNanoseconds()
            state.probing = false
        }
        return fresh
    }
}
