import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOWebSocket
import Replication
import ReservationEngine

extension APIRoutes {
    /// `GET /sales/{saleId}/live`: WebSocket of live stock. The token comes as the subprotocol `bearer.<token>`
    /// offered beside `flashsale.live.v1`, which the server selects (browsers cannot set headers on a WebSocket,
    /// and a token in the URL would land in every proxy's access log); or in an Authorization header.
    func registerLive(on router: Router<FlashSaleRequestContext>, hub: LiveStockHub) {
        router.ws("sales/:saleId/live") { request, context in
            do {
                let offered = !request.headers[values: .secWebSocketProtocol].isEmpty
                let selects = Self.offersLiveSubprotocol(request)
                if offered && !selects {
                    throw Problem.invalidRequest("offer the subprotocol \(Self.liveSubprotocol) (with bearer.<token>)")
                }
                _ = try await authenticate(request, context, live: true)
                let saleID = try saleID(context)
                do {
                    _ = try await engine.definition(saleID: saleID)
                } catch let error as ReservationError {
                    throw Problem(error)
                }
                return .upgrade(selects ? [.secWebSocketProtocol: Self.liveSubprotocol] : [:])
            } catch let problem as Problem {
                // A refused upgrade is an ordinary HTTP answer: this problem, not a bare 400.
                await FirstHeadGuard.noteRefusedUpgrade(problem, on: context.channel)
                throw problem
            }
        } onUpgrade: { inbound, outbound, context in
            guard let saleID = context.requestContext.parameters.get("saleId") else { return }
            // The token was verified before the upgrade; read it again for the subject (waitlist messages)
            // and its expiry (the socket closes with the policy code when it passes).
            var principal: Principal?
            if let token = bearerToken(of: context.request, live: true) {
                principal = try? await tokens.verify(token, nowSeconds: Timestamps.now.timeIntervalSince1970).get()
            }
            let customerID = principal?.customerID ?? ""
            let (id, frames) = hub.subscribe(saleID: saleID, customerID: customerID)
            defer { hub.unsubscribe(saleID: saleID, id: id) }
            if let (frame, closedReason) = await hub.currentFrame(saleID: saleID) {
                try await outbound.write(.text(frame))
                if let closedReason {
                    try await outbound.write(.text(LiveStockHub.closedFrame(closedReason)))
                    return
                }
            }
            // Frames until the sale closes; the client's own messages are read (and ignored) concurrently
            // so that a closed socket ends the handler.
            let expiresAt = principal?.expiresAtSeconds ?? 0
            let closing = try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask {
                    for try await frame in frames {
                        if frame == LiveStockHub.policyCloseFrame { return "too many live pages for this customer" }
                        try await outbound.write(.text(frame))
                    }
                    return nil
                }
                group.addTask {
                    for try await _ in inbound {}
                    return nil
                }
                group.addTask {
                    let seconds = expiresAt + BearerTokens.leewaySeconds - Timestamps.now.timeIntervalSince1970
                    if seconds.isFinite { try await Task.sleep(for: .milliseconds(Int64(max(0, min(seconds, 86_400 * 30)) * 1_000))) } else { try await Task.sleep(for: .seconds(86_400 * 30)) }
                    return "the token expired"
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if let closing { try await outbound.close(.policyViolation, reason: closing) }
        }
    }
}
