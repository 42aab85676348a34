import Foundation
import Replication

/// RFC 3339 UTC timestamps, formatted without Foundation formatters (the order path formats one per order).
enum Timestamps {
    /// `2026-11-24T19:00:00.123Z`
    static func format(milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(milliseconds % 1_000)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    /// Parses an RFC 3339 timestamp (with or without fractional seconds, any offset).
    static func parse(_ text: String) -> Int64? {
        guard text.utf8.count <= 40 else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1_000).rounded()) }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1_000).rounded()) }
        return nil
    }

    /// This host's wall clock. Sale decisions never use it (the ledger's scripts read Redis `TIME`); it
    /// serves displays and token expiry.
    /// The same reading as the arrival stamps (`wallClockMicroseconds`, with its fault-injection offset).
    static var nowMilliseconds: Int64 { wallClockMicroseconds() / 1_000 }

    static var now: Date { Date(timeIntervalSince1970: Double(nowMilliseconds) / 1_000) }
}
