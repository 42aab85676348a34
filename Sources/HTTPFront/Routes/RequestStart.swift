import HTTPTypes
import Synchronization

/// The front's stamp of when it read a request: `X-Request-Start`, as haproxy and nginx set it
/// (`http-request set-header X-Request-Start t=%[date(0,us)]`, `proxy_set_header X-Request-Start "t=${msec}"`).
/// Read only when the front is trusted to overwrite it (``ServerConfiguration/trustRequestStart``).
enum RequestStart {
    static let field = HTTPField.Name("X-Request-Start")!

    /// Microseconds since 1970 from `t=<value>` or `<value>`: an integer of microseconds, milliseconds or
    /// seconds (told apart by size), or seconds with a fraction (`1700000000.123`). Nil when it is anything
    /// else, or not between 2001 and 2286 (such a stamp is a misconfigured front, not an arrival).
    static func microseconds(_ value: String?) -> Int64? {
        guard var text = value?.utf8[...] else { return nil }
        if text.starts(with: "t=".utf8) { text = text.dropFirst(2) }
        guard !text.isEmpty, text.count <= 24 else { return nil }
        var whole: Int64 = 0, fraction: Int64 = 0, fractionDigits = 0, wholeDigits = 0
        var inFraction = false
        for byte in text {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = Int64(byte - UInt8(ascii: "0"))
                if inFraction {
                    guard fractionDigits < 6 else { continue }  // finer than a microsecond: dropped
                    fraction = fraction * 10 + digit
                    fractionDigits += 1
                } else {
                    guard wholeDigits < 17 else { return nil }
                    whole = whole * 10 + digit
                    wholeDigits += 1
                }
            case UInt8(ascii: "."):
                guard !inFraction, wholeDigits > 0 else { return nil }
                inFraction = true
            default:
                return nil
            }
        }
        guard wholeDigits > 0, !inFraction || fractionDigits > 0 else { return nil }
        let microseconds: Int64
        if inFraction {
            guard wholeDigits <= 10 else { return nil }  // a fraction only on seconds
            var scaled = fraction
            for _ in fractionDigits..<6 { scaled *= 10 }
            microseconds = whole * 1_000_000 + scaled
        } else if whole >= 100_000_000_000_000 {
            microseconds = whole  // 2001..2286 in microseconds: 15-16 digits
        } else if whole >= 100_000_000_000 {
            microseconds = whole * 1_000  // in milliseconds: 12-13 digits
        } else {
            microseconds = whole * 1_000_000  // in seconds: 9-10 digits
        }
        guard (978_307_200_000_000...9_999_999_999_000_000).contains(microseconds) else { return nil }
        return microseconds
    }
}

/// The front's clock as this instance sees it, to move the front's `X-Request-Start` stamps onto this
/// instance's clock (whose own skew the ledger corrects: see acquire_lease.lua).
///
/// A stamp is when the front read the request; this instance reads it later by the lag between them, so
/// `received - stamp` is the lag plus the front's clock running behind this one. The smallest of those over
/// the last 10 to 20 s estimates the skew from below (a lag is never negative). A negative minimum is a front
/// running ahead: its stamps are moved back by it (no stamp may lie in this instance's future). A minimum over a
/// second is a front running behind (no request waits a second between the front and here on every request
/// for 10 s): its stamps are moved forward by it. In between, lag and skew cannot be told apart and the stamps
/// are taken as they are, as the ledger does for the instances' clocks.
final class FrontClock: Sendable {
    static let epochMicroseconds: Int64 = 10_000_000
    static let tolerance: Int64 = 1_000_000

    private struct State {
        var epoch: Int64 = 0
        var currentMinimum = Int64.max
        var previousMinimum = Int64.max
    }

    private let state = Mutex(State())

    /// Notes one request's lag and returns its stamp on this instance's clock.
    func arrival(stamp: Int64, receivedAt received: Int64) -> Int64 {
        let lag = received - stamp
        let minimum: Int64 = state.withLock { state in
            let epoch = received / Self.epochMicroseconds
            if epoch != state.epoch {
                state.previousMinimum = epoch == state.epoch + 1 ? state.currentMinimum : .max
                state.currentMinimum = .max
                state.epoch = epoch
            }
            state.currentMinimum = min(state.currentMinimum, lag)
            return min(state.currentMinimum, state.previousMinimum)
        }
        let offset = minimum < 0 || minimum > Self.tolerance ? minimum : 0
        let corrected = stamp + offset
        assert(corrected <= received, "a corrected stamp lies no later than its receipt (offset <= minimum lag <= this lag)")
        return corrected
    }

    /// The correction applied now (microseconds; 0 within the tolerance).
    var offsetMicroseconds: Int64 {
        state.withLock { state in
            let minimum = min(state.currentMinimum, state.previousMinimum)
            guard minimum != .max else { return 0 }
            return minimum < 0 || minimum > Self.tolerance ? minimum : 0
        }
    }
}
