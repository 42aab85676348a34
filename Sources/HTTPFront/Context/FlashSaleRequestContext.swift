import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The request context of every route: the authenticated principal once checked, the client address
/// for rate limiting, and a 16 KiB cap on request bodies.
public struct FlashSaleRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The peer's address (IP without port), for per-address rate limits.
    public let clientAddress: String
    /// The connection (the live route notes there why it refused an upgrade).
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        channel = source.channel
    }

    /// Bodies above 16 KiB are refused with 413 (INVALID_REQUEST).
    public var maxUploadSize: Int { 16 * 1_024 }
}
