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
        let outcome = await probe.result {
            do {
                return try await redis.withConnection { connection throws(RedisError) -> ReadinessProbe.Outcome in
                    let masters = try connection.eachClusterMaster { master throws(RedisError) in
                        try master.send("PING").throwingServerError()
                        if requireLedgerScripts { for script in LedgerScripts.all { try master.ensureLoaded(script) } }
                    }
                    if let masters { return Self.clusterReadiness(masters) }
                    try connection.send("PING").throwingServerError()
                    if requireLedgerScripts { try Ledger(connection: connection).loadScripts() }
                    return ReadinessProbe.Outcome(failure: nil)
                }
            } catch {
                return ReadinessProbe.Outcome(failure: String(describing: error))
            }
        }
        var details = details
        if let cluster = outcome.cluster {
            assert(details.hasPrefix("{") && details.count > 2, "details is a JSON object with members")
            details = #"{"redisCluster":\#(cluster),"# + details.dropFirst()
        }
        guard let failure = outcome.failure else {
            return JSONText.response(status: .ok, #"{"status":"ready","checks":{"redis":"ok"},"details":\#(details)}"#)
        }
        return JSONText.response(status: .serviceUnavailable, #"{"status":"not_ready","checks":{"redis":"\#(failure.jsonEscaped)"},"details":\#(details)}"#)
    }

    /// Ready while any master of the cluster answers with the scripts loaded: the sales on it can sell. A master that
    /// does not answer makes only its own sales answer `RETRY_LATER` (until the cluster promotes its replica); were
    /// every instance unready for it, the sales on the other masters would stop too. The masters that do not answer
    /// are named in `details.redisCluster` (and `FlashSaleRedisClusterMasterMissing` pages for them).
    static func clusterReadiness(_ masters: [(master: RedisConfiguration.Endpoint, result: Result<Void, RedisError>)]) -> ReadinessProbe.Outcome {
        let down = masters.compactMap { master -> (RedisConfiguration.Endpoint, RedisError)? in
            guard case .failure(let error) = master.result else { return nil }
            return (master.master, error)
        }
        let named = down.prefix(16).map { #"{"master":"\#("\($0.0)".jsonEscaped)","error":"\#(String(describing: $0.1).jsonEscaped)"}"# }
        let summary = #"{"masters":\#(masters.count),"answering":\#(masters.count - down.count),"failing":[\#(named.joined(separator: ","))]}"#
        guard down.count < masters.count else {
            return ReadinessProbe.Outcome(failure: "no Redis Cluster master answers", cluster: summary)
        }
        return ReadinessProbe.Outcome(failure: nil, cluster: summary)
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

/// A readiness check shared by every caller: a result younger than ``freshnessNanoseconds`` is answered as it is;
/// an older one is answered too while one caller's probe refreshes it in the background, so that a slow probe (a
/// Redis node that stalls until the command timeout) never makes `/readyz` itself slow: the kubelet's probe has a
/// timeout of its own. Only the first call, with no result yet, waits for its probe.
final class ReadinessProbe: Sendable {
    static let freshnessNanoseconds: UInt64 = 500_000_000

    /// A probe's result: why the instance is not ready (nil: ready), and on Redis Cluster its masters' state (JSON).
    struct Outcome: Sendable {
        var failure: String?
        var cluster: String?
    }

    private struct State {
        var last: Outcome?
        var at: UInt64 = 0
        var probing = false
    }

    private let state = Mutex(State())
    /// Probes run (tests count them).
    let probes = Atomic(0)

    /// The last outcome, probing with `check` when it is stale and nobody else probes (in the background when there is
    /// an outcome to answer meanwhile).
    func result(_ check: @escaping @Sendable () async -> Outcome) async -> Outcome {
        let now = RateLimiter.monotonicNanoseconds()
        let (cached, refresh): (Outcome?, Bool) = state.withLock { state in
            if let last = state.last {
                if state.probing || now &- state.at < Self.freshnessNanoseconds { return (last, false) }
                state.probing = true
                return (last, true)
            }
            state.probing = true
            return (nil, true)
        }
        if let cached {
            if refresh { Task { await self.probe(check) } }
            return cached
        }
        return await probe(check)
    }

    @discardableResult
    private func probe(_ check: @Sendable () async -> Outcome) async -> Outcome {
        probes.add(1, ordering: .relaxed)
        let fresh = await check()
        state.withLock { state in
            state.last = fresh
            state.at = RateLimiter.monotonicNanoseconds()
            state.probing = false
        }
        return fresh
    }
}
