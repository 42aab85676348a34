import Hummingbird
import Prometheus
import Replication
import Synchronization

/// The instance's Prometheus metrics (swift-prometheus), one registry per application, served at `/metrics`.
///
/// Names: `flashsale_http_requests_total{route,status}`,
/// `flashsale_http_request_duration_seconds{route,method,status_class}` (histogram, 5 ms to 2 s: the SLO's p95
/// and availability), `flashsale_orders_total{result}`,
/// `flashsale_commit_batch_orders` (histogram), `flashsale_commit_latency_seconds` (histogram),
/// `flashsale_front_lag_seconds` (histogram, with `FLASHSALE_TRUST_REQUEST_START`), `flashsale_leases_held`, `flashsale_websocket_clients`, `flashsale_commit_queue_depth`, and with MongoDB
/// `flashsale_outbox_written_total{kind}` (orders, stock_events), `flashsale_outbox_compensated_total`,
/// `flashsale_outbox_consecutive_failures`, `flashsale_archive_reads_total{result}` and `flashsale_mongo_read_seconds`
/// (reads after a sale left Redis), and `flashsale_tls_certificate_expiry_timestamp_seconds` (0 without TLS).
public final class FlashSaleMetrics: CommitObserver, ArchiveObserver, Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let requestSeries = Mutex<[RequestSeriesKey: RequestSeries]>([:])
    private let orderCounters = Mutex<[String: Counter]>([:])
    private let batchOrders: ValueHistogram
    private let commitLatency: DurationHistogram
    private let frontLag: DurationHistogram
    private let leasesHeld: Gauge
    private let leasesLapsed: Counter
    /// The engine's lapsed leases at the last scrape (the counter advances by the difference).
    private let leasesLapsedSeen = Mutex(0)
    private let webSocketClients: Gauge
    private let commitQueueDepth: Gauge
    private let outboxOrders: Counter
    private let outboxStockEvents: Counter
    private let outboxCompensated: Counter
    private let outboxFailures: Gauge
    private let outboxFailingSales: Gauge
    private let outboxHeldCancellations: Gauge
    private let ledgerDurable: Gauge
    private let certificateExpiry: Gauge
    private let archiveReads: [ArchiveReadResult: Counter]
    private let mongoReadLatency: DurationHistogram
    /// The drainer's totals at the last scrape (counters advance by the difference).
    private let outboxSeen = Mutex<(orders: Int, stockEvents: Int, compensated: Int)>((0, 0, 0))

    public init() {
        batchOrders = registry.makeValueHistogram(descriptor: Self.metric("flashsale_commit_batch_orders", help: "Orders per commit batch (one EVALSHA)"), buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
        commitLatency = registry.makeDurationHistogram(descriptor: Self.metric("flashsale_commit_latency_seconds", help: "Time from sending a commit batch to the ledger's answer"), buckets: [.microseconds(250), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1)])
        frontLag = registry.makeDurationHistogram(descriptor: Self.metric("flashsale_front_lag_seconds", help: "From the front's X-Request-Start to the order reaching the engine: how late the instance saw its customers (orders across instances follow arrival only among the customers seen)"), buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2_500)])
        leasesHeld = registry.makeGauge(descriptor: Self.metric("flashsale_leases_held", help: "Leases this instance sells from"))
        leasesLapsed = registry.makeCounter(descriptor: Self.metric("flashsale_leases_lapsed_total", help: "Leases whose bucket closed at the local deadline unrenewed (the ledger, or the sale's Redis master, did not answer in time)"))
        webSocketClients = registry.makeGauge(descriptor: Self.metric("flashsale_websocket_clients", help: "Open live-stock WebSockets"))
        commitQueueDepth = registry.makeGauge(descriptor: Self.metric("flashsale_commit_queue_depth", help: "Orders and ledger calls waiting for the committer"))
        outboxOrders = registry.makeCounter(descriptor: Self.metric("flashsale_outbox_written_total", help: "Outbox entries written to MongoDB"), labels: [("kind", "orders")])
        outboxStockEvents = registry.makeCounter(descriptor: Self.metric("flashsale_outbox_written_total", help: "Outbox entries written to MongoDB"), labels: [("kind", "stock_events")])
        outboxCompensated = registry.makeCounter(descriptor: Self.metric("flashsale_outbox_compensated_total", help: "Orders MongoDB refused for good and the ledger compensated"))
        outboxFailingSales = registry.makeGauge(descriptor: Self.metric("flashsale_outbox_failing_sales", help: "Sales whose outbox drain failed in the last pass (skipped; the others drain)"))
        outboxHeldCancellations = registry.makeGauge(descriptor: Self.metric("flashsale_outbox_held_cancellations", help: "Cancellations MongoDB refused, kept in the outbox and retried (their sale does not retire meanwhile)"))
        outboxFailures = registry.makeGauge(descriptor: Self.metric("flashsale_outbox_consecutive_failures", help: "Outbox passes failed in a row (0 while MongoDB accepts writes)"))
        let registry = self.registry
        archiveReads = Dictionary(uniqueKeysWithValues: [ArchiveReadResult.hit, .miss, .negative, .busy].map { result in
            (result, registry.makeCounter(descriptor: FlashSaleMetrics.metric("flashsale_archive_reads_total", help: "Reads of settled sales and their orders (after Redis retired them) by where they were answered: hit (Redis cache), miss (MongoDB), negative (known missing), busy (refused)"),
                                          labels: [("result", result.rawValue)]))
        })
        mongoReadLatency = registry.makeDurationHistogram(descriptor: Self.metric("flashsale_mongo_read_seconds", help: "MongoDB reads of settled sales, from the query to its answer"),
                                                          buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5)])
        certificateExpiry = registry.makeGauge(descriptor: Self.metric("flashsale_tls_certificate_expiry_timestamp_seconds", help: "When the front's TLS certificate expires (seconds since 1970; 0 without TLS)"))
        ledgerDurable = registry.makeGauge(descriptor: Self.metric("flashsale_ledger_durable", help: "The ledger's Redis keeps acknowledged writes across a crash (1), does not (0), or would not say (-1)"))
    }

    public func archiveRead(_ result: ArchiveReadResult) {
        archiveReads[result]?.increment()
    }

    public func mongoRead(latency: Duration) {
        mongoReadLatency.record(latency)
    }

    /// The front's TLS certificate expires at this time (seconds since 1970).
    func tlsCertificate(notAfter: Int) {
        certificateExpiry.set(to: Double(notAfter))
    }

    /// A metric name written out whole (the unit is part of it, as in `_total` or `_seconds`).
    private static func metric(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    public func batchCommitted(orders: Int, latency: Duration) {
        batchOrders.record(Double(orders))
        commitLatency.record(latency)
    }

    /// An order stamped by the front reached the engine this long after the front read it.
    func frontLag(microseconds: Int64) {
        frontLag.record(.microseconds(max(0, microseconds)))
    }

    /// The request duration histogram's buckets: the SLO's 200 ms bound is one of them, so the share of
    /// requests over it is exact, and p95 is interpolated between neighbours no more than 2x apart.
    static let requestDurationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(200), .milliseconds(300), .milliseconds(500), .seconds(1), .seconds(2),
    ]

    /// Counts one request and records its duration. `route` is the route template (never an id);
    /// `method` is one of the methods the service routes, anything else counts as `other`.
    func request(route: String, method: HTTPRequest.Method, status: Int, duration: Duration) {
        let key = RequestSeriesKey(route: route, method: Self.methodLabel(method), status: status)
        let series = requestSeries.withLock { all in
            if let series = all[key] { return series }
            let series = RequestSeries(
                counter: registry.makeCounter(descriptor: Self.metric("flashsale_http_requests_total", help: "HTTP requests by route and status"),
                                              labels: [("route", route), ("status", String(status))]),
                duration: registry.makeDurationHistogram(
                    descriptor: Self.metric("flashsale_http_request_duration_seconds", help: "Time from a request's head to its answer, by route template, method and status class"),
                    labels: [("route", route), ("method", key.method), ("status_class", "\(status / 100)xx")],
                    buckets: Self.requestDurationBuckets))
            all[key] = series
            return series
        }
        series.counter.increment()
        series.duration.record(duration)
    }

    static func methodLabel(_ method: HTTPRequest.Method) -> String {
        switch method {
        case .get: "GET"
        case .post: "POST"
        case .delete: "DELETE"
        case .head: "HEAD"
        case .options: "OPTIONS"
        case .put: "PUT"
        case .patch: "PATCH"
        default: "other"
        }
    }

    /// `result` is `confirmed`, `waitlisted` or an error code.
    func order(result: String) {
        let counter = orderCounters.withLock { counters in
            if let counter = counters[result] { return counter }
            let counter = registry.makeCounter(descriptor: Self.metric("flashsale_orders_total", help: "Order requests by outcome"), labels: [("result", result)])
            counters[result] = counter
            return counter
        }
        counter.increment()
    }

    /// The Prometheus text exposition, with the gauges read now.
    func exposition(engine: ReservationService, hub: LiveStockHub, drainer: OutboxDrainer?, durability: LedgerDurability) -> [UInt8] {
        ledgerDurable.set(to: durability.gaugeValue)
        if let status = drainer?.status {
            let previous = outboxSeen.withLock { seen in
                defer { seen = (status.ordersWritten, status.stockEventsWritten, status.compensated) }
                return seen
            }
            outboxOrders.increment(by: Int64(max(0, status.ordersWritten - previous.orders)))
            outboxStockEvents.increment(by: Int64(max(0, status.stockEventsWritten - previous.stockEvents)))
            outboxCompensated.increment(by: Int64(max(0, status.compensated - previous.compensated)))
            outboxFailures.set(to: Double(status.consecutiveFailures))
            outboxFailingSales.set(to: Double(status.failingSales.count))
            outboxHeldCancellations.set(to: Double(status.heldCancellations))
        }
        leasesHeld.set(to: Double(engine.leasesHeld))
        let lapsed = engine.leasesLapsed
        let lapsedBefore = leasesLapsedSeen.withLock { seen in
            defer { seen = lapsed }
            return seen
        }
        leasesLapsed.increment(by: Int64(max(0, lapsed - lapsedBefore)))
        webSocketClients.set(to: Double(hub.socketCount))
        commitQueueDepth.set(to: Double(engine.commitQueueDepth))
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8_192)
        registry.emit(into: &buffer)
        return buffer
    }
}

/// One request series: its route template, method label and status.
struct RequestSeriesKey: Hashable {
    let route: String
    let method: String
    let status: Int
}

/// The counter and the duration histogram of one request series.
struct RequestSeries {
    let counter: Counter
    let duration: DurationHistogram
}
