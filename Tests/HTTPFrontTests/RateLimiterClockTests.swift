@testable import HTTPFront
import Testing

@Suite("Rate limiter clock")
struct RateLimiterClockTests {
    // The first reading initializes the origin; no reading is ever before it, and readings never go back.
    @Test func monotonicFromTheFirstCall() {
        var last = RateLimiter.monotonicNanoseconds()
        for _ in 0..<10_000 {
            let now = RateLimiter.monotonicNanoseconds()
            #expect(now >= last)
            last = now
        }
    }
}
