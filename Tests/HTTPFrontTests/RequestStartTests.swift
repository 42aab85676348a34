@testable import HTTPFront
import Testing

@Suite("X-Request-Start: the front's arrival stamp")
struct RequestStartTests {
    // haproxy's microseconds, nginx's seconds with milliseconds, plain milliseconds and seconds, with or without
    // `t=`, all read as microseconds since 1970.
    @Test(arguments: [
        ("t=1764300000123456", Int64(1_764_300_000_123_456)),
        ("1764300000123456", 1_764_300_000_123_456),
        ("t=1764300000.123", 1_764_300_000_123_000),
        ("t=1764300000.1234567", 1_764_300_000_123_456),
        ("t=1764300000123", 1_764_300_000_123_000),
        ("1764300000", 1_764_300_000_000_000),
    ])
    func readsTheFormatsFrontsWrite(text: String, microseconds: Int64) {
        #expect(RequestStart.microseconds(text) == microseconds)
    }

    // Anything else is no stamp (the instance's own clock decides): never a guess.
    @Test(arguments: [nil, "", "t=", "t=abc", "t=-1764300000", "t=1764300000.", "t=.5", "t=1.2.3", "t=17643000001234.5",
                      "t=12", "t=99999999999999999", "t=123456789012345678901234", " t=1764300000"])
    func refusesAnythingElse(text: String?) {
        #expect(RequestStart.microseconds(text) == nil)
    }
}
