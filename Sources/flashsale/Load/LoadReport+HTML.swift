import Foundation

extension LoadReport {
    /// A self-contained page: the figures, then latency-over-time and stock-over-time charts as inline SVG.
    func html() -> String {
        let latencyPoints = timeline.map { ($0.atMilliseconds / 1_000, $0.p99Milliseconds) }
        let stockPoints = timeline.compactMap { sample in sample.available.map { (sample.atMilliseconds / 1_000, Double($0)) } }
        let latencyText = String(format: "%.2f / %.2f / %.2f / %.2f / %.2f", latency.p50Milliseconds, latency.p95Milliseconds,
                                 latency.p99Milliseconds, latency.p999Milliseconds, latency.maxMilliseconds)
        let sellOutText: String = sellOutMilliseconds.map { String(format: "%.0f ms", $0) } ?? "–"
        let fcfsText: String = fcfsPrecision.map { String(format: "%.3f", $0) } ?? "–"
        var oversellText = "–"
        if let oversell {
            let verdict = oversell.oversold ? "OVERSOLD" : "no oversell"
            let invariant = oversell.invariantHolds ? "invariant holds" : "invariant broken"
            oversellText = "stock \(oversell.stock), sold \(oversell.sold), \(verdict), \(invariant)"
        }
        let resultsText = requestResults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let outcomesText = customerOutcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        var rows: [(String, String)] = [("Mode", mode), ("Customers", "\(customers)"), ("Requests", "\(requests)")]
        rows.append(("Requests/s", String(format: "%.0f", requestsPerSecond)))
        rows.append(("Orders confirmed", "\(ordersConfirmed)"))
        rows.append(("Orders/s", String(format: "%.0f", ordersPerSecond)))
        rows.append(("Latency p50 / p95 / p99 / p99.9 / max (ms)", latencyText))
        rows.append(("Sell-out after opening", sellOutText))
        rows.append(("FCFS precision", fcfsText))
        rows.append(("Oversell check", oversellText))
        rows.append(("Request results", resultsText))
        rows.append(("Customer outcomes", outcomesText))
        rows.append(("Machine", machine))
        rows.append(("Command", command))
        let table = rows.map { "<tr><th>\(Self.escape($0.0))</th><td>\(Self.escape($0.1))</td></tr>" }.joined(separator: "\n")
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>FlashSale load report</title>
        <style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
        th{text-align:left;padding-right:1rem;font-weight:600}td,th{padding:.2rem .5rem;border-bottom:1px solid #eee}
        svg{background:#fafafa;border:1px solid #ddd;margin:.5rem 0}</style></head><body>
        <h1>FlashSale load report</h1>
        <table>\(table)</table>
        <h2>Latency p99 over time (ms, per 100 ms of sends)</h2>
        \(Self.chart(latencyPoints, color: "#d40000"))
        <h2>Stock over time (units left, from confirmations seen by customers)</h2>
        \(Self.chart(stockPoints, color: "#0060d4"))
        </body></html>
        """
    }

    static func chart(_ points: [(Double, Double)], color: String) -> String {
        let width = 900.0, height = 260.0, margin = 40.0
        guard let maxX = points.map(\.0).max(), let maxY = points.map(\.1).max(), maxX > 0 else {
            return "<p>No data.</p>"
        }
        let top = max(maxY, 1)
        let path = points.map { x, y in
            String(format: "%.1f,%.1f", margin + x / maxX * (width - 2 * margin), height - margin - y / top * (height - 2 * margin))
        }.joined(separator: " ")
        return """
        <svg width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" xmlns="http://www.w3.org/2000/svg">
        <line x1="\(margin)" y1="\(height - margin)" x2="\(width - margin)" y2="\(height - margin)" stroke="#999"/>
        <line x1="\(margin)" y1="\(margin)" x2="\(margin)" y2="\(height - margin)" stroke="#999"/>
        <text x="\(margin)" y="\(margin - 8)" font-size="12">\(String(format: "%.1f", top))</text>
        <text x="\(width - margin - 40)" y="\(height - margin + 16)" font-size="12">\(String(format: "%.1f s", maxX))</text>
        <polyline fill="none" stroke="\(color)" stroke-width="2" points="\(path)"/>
        </svg>
        """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
