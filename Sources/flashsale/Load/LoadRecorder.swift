import Foundation
import Histogram

/// What one virtual customer (or one loop) saw; merged once at the end, so the hot path takes no lock.
struct CustomerRecord: Sendable {
    var customerID: String
    /// Milliseconds from the run's origin to the first order attempt.
    var firstAttemptMilliseconds: Double?
    /// Final outcome: confirmed, waitlist_served, waitlist_unserved, or an error code.
    var outcome: String = "none"
    var confirmedUnits = 0
    var confirmedAtMilliseconds: Double?
    var requests: [RequestRecord] = []
}

struct RequestRecord: Sendable {
    /// Milliseconds from the run's origin to the (intended) send.
    var sentAtMilliseconds: Double
    var latencyMicroseconds: UInt64
    /// 201, 202, or the problem code (transport failures: TRANSPORT_ERROR).
    var result: String
}

/// The load run's report: the figures, then JSON and a self-contained HTML page.
struct LoadReport: Codable {
    struct Latency: Codable {
        var p50Milliseconds: Double
        var p95Milliseconds: Double
        var p99Milliseconds: Double
        var p999Milliseconds: Double
        var maxMilliseconds: Double
    }
    struct Sample: Codable {
        var atMilliseconds: Double
        var requests: Int
        var p99Milliseconds: Double
        var available: Int?
    }
    struct Oversell: Codable {
        var stock: Int
        var sold: Int
        var soldSeenByCustomers: Int
        var pool: Int?
        var leased: Int?
        var invariantHolds: Bool
        var oversold: Bool
    }

    var mode: String
    var command: String
    var machine: String
    var startedAt: String
    var durationSeconds: Double
    var customers: Int
    var requests: Int
    var requestsPerSecond: Double
    var ordersConfirmed: Int
    var ordersPerSecond: Double
    var latency: Latency
    var requestResults: [String: Int]
    var customerOutcomes: [String: Int]
    var sellOutMilliseconds: Double?
    var fcfsPrecision: Double?
    var oversell: Oversell?
    var timeline: [Sample]
    /// What `flashsale load merge` needs to combine reports of generators run side by side (absent in older
    /// reports): the run's start on the wall clock, its shard, every latency as (microseconds, count) pairs of
    /// the HDR histogram, and each customer's first attempt on the wall clock with whether they won.
    var startedAtUnixMilliseconds: Double?
    var shard: String?
    var latencyHistogram: [[UInt64]]?
    var arrivals: [Arrival]?

    struct Arrival: Codable {
        var atUnixMilliseconds: Double
        var won: Bool
    }

    static func build(mode: String, command: String, records: [CustomerRecord], durationSeconds: Double, stock: Int?,
                      oversell: Oversell?, openedAtMilliseconds: Double?, originUnixMilliseconds: Double? = nil, shard: String? = nil) -> LoadReport {
        var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var results: [String: Int] = [:]
        var outcomes: [String: Int] = [:]
        var buckets: [Int: (count: Int, histogram: Histogram<UInt64>)] = [:]
        var confirmations: [(Double, Int)] = []
        var requestCount = 0
        for record in records {
            outcomes[record.outcome, default: 0] += 1
            if let at = record.confirmedAtMilliseconds, record.confirmedUnits > 0 { confirmations.append((at, record.confirmedUnits)) }
            for request in record.requests {
                requestCount += 1
                _ = histogram.record(request.latencyMicroseconds)
                results[request.result, default: 0] += 1
                let bucket = Int(request.sentAtMilliseconds / 100)
                var entry = buckets[bucket] ?? (0, Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .two))
                entry.count += 1
                _ = entry.histogram.record(request.latencyMicroseconds)
                buckets[bucket] = entry
            }
        }
        confirmations.sort { $0.0 < $1.0 }
        var timeline: [Sample] = []
        var soldSoFar = 0
        var confirmationIndex = 0
        for bucket in buckets.keys.sorted() {
            let end = Double(bucket + 1) * 100
            while confirmationIndex < confirmations.count, confirmations[confirmationIndex].0 < end {
                soldSoFar += confirmations[confirmationIndex].1
                confirmationIndex += 1
            }
            let entry = buckets[bucket]!
            timeline.append(Sample(atMilliseconds: Double(bucket) * 100, requests: entry.count,
                                   p99Milliseconds: Double(entry.histogram.valueAtPercentile(99)) / 1_000,
                                   available: stock.map { max(0, $0 - soldSoFar) }))
        }
        let confirmedUnits = confirmations.reduce(0) { $0 + $1.1 }
        var sellOut: Double?
        if let stock, let opened = openedAtMilliseconds, confirmedUnits >= stock, let last = confirmations.last?.0 {
            sellOut = last - opened
        }
        func milliseconds(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1_000 }
        let confirmedOrders = records.filter { $0.confirmedUnits > 0 }.count
        return LoadReport(
            mode: mode, command: command, machine: machineDescription(), startedAt: ISO8601DateFormatter().string(from: Date()),
            durationSeconds: durationSeconds, customers: records.count, requests: requestCount,
            requestsPerSecond: Double(requestCount) / max(durationSeconds, 0.001),
            ordersConfirmed: confirmedOrders, ordersPerSecond: Double(confirmedOrders) / max(durationSeconds, 0.001),
            latency: Latency(p50Milliseconds: milliseconds(50), p95Milliseconds: milliseconds(95), p99Milliseconds: milliseconds(99),
                             p999Milliseconds: milliseconds(99.9), maxMilliseconds: Double(histogram.maxRecorded) / 1_000),
            requestResults: results, customerOutcomes: outcomes, sellOutMilliseconds: sellOut,
            fcfsPrecision: fcfsPrecision(records), oversell: oversell, timeline: timeline,
            startedAtUnixMilliseconds: originUnixMilliseconds, shard: shard,
            latencyHistogram: histogram.recordedValues().map { [$0.value, UInt64($0.count)] },
            arrivals: originUnixMilliseconds.map { origin in
                records.compactMap { record in
                    record.firstAttemptMilliseconds.map { Arrival(atUnixMilliseconds: origin + $0, won: record.confirmedUnits > 0) }
                }
            }
        )
    }

    /// Share of the winners that are among the first `winners` arrivals (1.0 = perfectly first-come-first-served).
    static func fcfsPrecision(_ records: [CustomerRecord]) -> Double? {
        let winners = Set(records.filter { $0.confirmedUnits > 0 }.map(\.customerID))
        guard !winners.isEmpty else { return nil }
        let arrivals = records.compactMap { record in record.firstAttemptMilliseconds.map { (record.customerID, $0) } }
            .sorted { $0.1 < $1.1 }.prefix(winners.count).map(\.0)
        return Double(winners.intersection(arrivals).count) / Double(winners.count)
    }

    static func machineDescription() -> String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824
        return "\(cores) cores, \(String(format: "%.0f", memory)) GiB, \(ProcessInfo.processInfo.operatingSystemVersionString)"
    }

    /// One line, for `--report-stdout`.
    func compactJSON() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }

    func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    var summaryText: String {
        var lines = [
            "mode \(mode): \(customers) customers, \(requests) requests in \(String(format: "%.2f", durationSeconds)) s",
            String(format: "  %.0f requests/s, %.0f orders/s, %d orders confirmed", requestsPerSecond, ordersPerSecond, ordersConfirmed),
            String(format: "  latency ms: p50 %.2f  p95 %.2f  p99 %.2f  p99.9 %.2f  max %.2f",
                   latency.p50Milliseconds, latency.p95Milliseconds, latency.p99Milliseconds, latency.p999Milliseconds, latency.maxMilliseconds),
            "  request results: " + requestResults.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
            "  customer outcomes: " + customerOutcomes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
        ]
        if let sellOutMilliseconds { lines.append(String(format: "  sold out %.0f ms after opening", sellOutMilliseconds)) }
        if let fcfsPrecision { lines.append(String(format: "  FCFS precision %.3f", fcfsPrecision)) }
        if let oversell {
            lines.append("  ledger: stock \(oversell.stock) sold \(oversell.sold) (customers saw \(oversell.soldSeenByCustomers)); "
                + (oversell.oversold ? "OVERSOLD" : "no oversell") + (oversell.invariantHolds ? ", invariant holds" : ", INVARIANT BROKEN"))
        }
        return lines.joined(separator: "\n")
    }
}
