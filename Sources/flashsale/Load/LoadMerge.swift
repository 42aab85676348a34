import ArgumentParser
import Foundation
import Histogram

/// `flashsale load merge`: one report from the reports of generators run side by side (an Indexed Job's pods).
///
/// Counts add up; the rate is all requests over the longest run (the generators run at the same time);
/// latency percentiles come from the union of the generators' HDR histograms, not from averaging percentiles;
/// FCFS precision is recomputed over every customer's first attempt on the wall clock (the generators' clocks
/// must agree to well under the spread of the crowd's arrivals: NTP on the nodes); the ledger check takes the
/// latest generator's reading of the ledger against the units all generators' customers were told were theirs.
struct MergeReports: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combine the JSON reports of load generators run side by side into one report.",
        discussion: """
        Each input is a report (.json) or a log holding LOAD-REPORT lines (`kubectl logs` of the Job's pods, written \
        with --report-stdout); - reads standard input. Exits 1 when the combined ledger check fails.
        """
    )

    @Argument(help: "Reports or logs with LOAD-REPORT lines (- for standard input).") var inputs: [String]
    @Option(help: "Merged report path without extension (.json and .html are written).") var report: String?
    /// Bounds what is read: a report or log larger than this is refused.
    static let maxInputBytes = 512 * 1_024 * 1_024

    func run() throws {
        var reports: [LoadReport] = []
        for input in inputs {
            let data = input == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: input))
            guard data.count <= Self.maxInputBytes else { throw ValidationError("\(input) is over \(Self.maxInputBytes) bytes") }
            reports += try Self.reports(in: data, name: input)
        }
        guard !reports.isEmpty else { throw ValidationError("no report found in \(inputs.joined(separator: ", "))") }
        let merged = try Self.merge(reports)
        let path = report ?? "reports/load-merged-\(Int(Date().timeIntervalSince1970))"
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        try merged.json().write(to: URL(fileURLWithPath: path + ".json"))
        try Data(merged.html().utf8).write(to: URL(fileURLWithPath: path + ".html"))
        print("merged \(reports.count) reports (shards \(reports.compactMap(\.shard).joined(separator: ", ")))")
        print(merged.summaryText)
        print("report: \(path).json and \(path).html")
        if merged.oversell?.oversold == true || merged.oversell?.invariantHolds == false {
            throw ExitCode(1)
        }
    }

    /// A whole JSON report, or every `LOAD-REPORT {...}` line of a log.
    static func reports(in data: Data, name: String) throws -> [LoadReport] {
        let decoder = JSONDecoder()
        if let first = data.first(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }), first == UInt8(ascii: "{") {
            do { return [try decoder.decode(LoadReport.self, from: data)] } catch {
                throw ValidationError("\(name): not a load report: \(error)")
            }
        }
        var found: [LoadReport] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let range = line.range(of: "LOAD-REPORT ") else { continue }
            do { found.append(try decoder.decode(LoadReport.self, from: Data(line[range.upperBound...].utf8))) } catch {
                throw ValidationError("\(name): a LOAD-REPORT line is not a load report: \(error)")
            }
        }
        return found
    }

    static func merge(_ reports: [LoadReport]) throws -> LoadReport {
        precondition(!reports.isEmpty, "merge needs a report")
        let modes = Set(reports.map(\.mode))
        guard modes.count == 1, let mode = modes.first else { throw ValidationError("the reports mix modes: \(modes.sorted().joined(separator: ", "))") }
        var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        for report in reports {
            guard let pairs = report.latencyHistogram else {
                throw ValidationError("a report (shard \(report.shard ?? "?")) has no latency histogram: it was written by an older flashsale")
            }
            for pair in pairs where pair.count == 2 { _ = histogram.record(pair[0], count: pair[1]) }
        }
        func milliseconds(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1_000 }
        func sum(_ dictionaries: [[String: Int]]) -> [String: Int] {
            dictionaries.reduce(into: [:]) { total, next in for (key, value) in next { total[key, default: 0] += value } }
        }
        let duration = reports.map(\.durationSeconds).max() ?? 0.001
        let requests = reports.reduce(0) { $0 + $1.requests }
        let orders = reports.reduce(0) { $0 + $1.ordersConfirmed }
        let arrivals = reports.flatMap { $0.arrivals ?? [] }
        var oversell: LoadReport.Oversell?
        if let latest = reports.compactMap(\.oversell).max(by: { $0.sold < $1.sold }) {
            let seen = reports.reduce(0) { $0 + ($1.oversell?.soldSeenByCustomers ?? 0) }
            oversell = LoadReport.Oversell(stock: latest.stock, sold: latest.sold, soldSeenByCustomers: seen, pool: latest.pool, leased: latest.leased,
                                           invariantHolds: latest.invariantHolds, oversold: latest.sold > latest.stock || seen > latest.sold)
        }
        return LoadReport(
            mode: mode, command: "flashsale load merge (\(reports.count) reports)", machine: Set(reports.map(\.machine)).sorted().joined(separator: "; "),
            startedAt: reports.map(\.startedAt).min() ?? "", durationSeconds: duration,
            customers: reports.reduce(0) { $0 + $1.customers }, requests: requests,
            requestsPerSecond: Double(requests) / max(duration, 0.001), ordersConfirmed: orders, ordersPerSecond: Double(orders) / max(duration, 0.001),
            latency: .init(p50Milliseconds: milliseconds(50), p95Milliseconds: milliseconds(95), p99Milliseconds: milliseconds(99),
                           p999Milliseconds: milliseconds(99.9), maxMilliseconds: Double(histogram.maxRecorded) / 1_000),
            requestResults: sum(reports.map(\.requestResults)), customerOutcomes: sum(reports.map(\.customerOutcomes)),
            sellOutMilliseconds: reports.compactMap(\.sellOutMilliseconds).max(),
            fcfsPrecision: Self.fcfsPrecision(arrivals), oversell: oversell, timeline: [],
            startedAtUnixMilliseconds: reports.compactMap(\.startedAtUnixMilliseconds).min(), shard: "merged \(reports.count)",
            latencyHistogram: histogram.recordedValues().map { [$0.value, UInt64($0.count)] }, arrivals: arrivals
        )
    }

    /// Share of the winners among the first `winners` arrivals, over all generators' customers.
    static func fcfsPrecision(_ arrivals: [LoadReport.Arrival]) -> Double? {
        let winners = arrivals.filter(\.won).count
        guard winners > 0 else { return nil }
        let first = arrivals.sorted { $0.atUnixMilliseconds < $1.atUnixMilliseconds }.prefix(winners)
        return Double(first.filter(\.won).count) / Double(winners)
    }
}
