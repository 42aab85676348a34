import Hummingbird
import HummingbirdWebSocket
import Replication
import ReservationEngine

extension APIRoutes {
    /// `GET /sales/{saleId}/live`: WebSocket of live stock. The token may come as `?access_token=`
    /// (browsers cannot set headers on a WebSocket); it is never logged.
    func registerLive(on router: Router<FlashSaleRequestContext>, hub: LiveStockHub) {
        router.ws("sales/:saleId/live") { request, context in
            _ = try authenticate(request, context, allowQueryToken: true)
            let saleID = try saleID(context)
            do {
                _ = try await engine.definition(saleID: saleID)
            } catch let error as ReservationError {
                throw Problem(error)
            }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            guard let saleID = context.requestContext.parameters.get("saleId") else { return }
            // The token was verified before the upgrade; read its subject again for waitlist messages.
            let customerID = bearerToken(of: context.request, allowQueryToken: true).flatMap { token in
                try? tokens.verify(token).get().customerID
            } ?? ""
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
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await frame in frames { try await outbound.write(.text(frame)) }
                }
                group.addTask {
                    for try await _ in inbound {}
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }
}
