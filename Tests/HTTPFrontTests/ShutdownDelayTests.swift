import Foundation
@testable import HTTPFront
import Logging
import ServiceLifecycle
import Testing
import TestSupport

@Suite("A graceful stop: unready at once, still serving for the delay, then draining")
struct ShutdownDelayTests {
    // On the stop signal the instance answers /readyz 503 at once, keeps answering everything else (new connections
    // included) for the delay with `Connection: close`, and only then stops accepting.
    @Test func unreadyFirstThenStop() async throws {
        let fixture = try HTTPFixture()
        let port = try RedisServer.freeLoopbackPort()
        let components = fixture.components { $0.port = port }
        var logger = Logger(label: "shutdown-test")
        logger.logLevel = .warning
        let group = ServiceGroup(configuration: .init(
            services: [components.application, ShutdownDelay(drain: components.drain, seconds: 1.5, logger: logger)], logger: logger))
        let running = Task { try await group.run() }
        func answer(_ path: String) async -> String {
            guard let connection = try? RawConnection(port: port) else { return "refused" }
            defer { connection.close() }
            connection.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            return await connection.readResponse(seconds: 3).text
        }
        var ready = ""
        for _ in 0..<100 where !ready.hasPrefix("HTTP/1.1 200") {
            ready = await answer("/readyz")
            if !ready.hasPrefix("HTTP/1.1 200") { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(ready.hasPrefix("HTTP/1.1 200") && !ready.lowercased().contains("connection: close"), "\(ready)")
        let kept = try RawConnection(port: port)  // a keep-alive connection opened before the signal
        defer { kept.close() }
        kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await kept.readResponse().text.hasPrefix("HTTP/1.1 200"))

        let signalled = Date()
        await group.triggerGracefulShutdown()
        let draining = await answer("/readyz")
        #expect(draining.hasPrefix("HTTP/1.1 503") && draining.contains(#""status":"draining""#), "unready at once: \(draining)")
        #expect(Date().timeIntervalSince(signalled) < 0.5)
        let served = await answer("/healthz")
        #expect(served.hasPrefix("HTTP/1.1 200") && served.lowercased().contains("connection: close"), "still served, told to close: \(served)")
        kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        let keptAnswer = await kept.readResponse().text
        #expect(keptAnswer.hasPrefix("HTTP/1.1 200") && keptAnswer.lowercased().contains("connection: close"), "\(keptAnswer)")
        // A connection that never asks anything does not hold the drain up.
        let silent = try RawConnection(port: port)
        defer { silent.close() }
        // After the delay the listener closes and the process drains.
        var refused = false
        for _ in 0..<100 where !refused {
            try await Task.sleep(for: .milliseconds(50))
            if let probe = try? RawConnection(port: port) { probe.close() } else { refused = true }
        }
        #expect(refused, "no new connections after the delay")
        #expect(Date().timeIntervalSince(signalled) >= 1.4, "not before the delay: \(Date().timeIntervalSince(signalled)) s")
        try await running.value
        #expect(Date().timeIntervalSince(signalled) < 10, "stopped \(Date().timeIntervalSince(signalled)) s after the signal (idle timer 60 s)")
    }
}
