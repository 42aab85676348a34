import HTTPTypes

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
