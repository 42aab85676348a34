import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The request context of every route: the authenticated principal once checked, the client address
/// for rate limiting, and a 16 KiB cap on request bodies.
public struct FlashSaleRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The connection's peer (IP without port): a proxy's when one is in front.
    public let peerAddress: String
    /// The client as the connection names it: the address a PROXY protocol header declared, else the peer. The
    /// forwarding headers may name one further back (``TrustedProxies/clientKey(peer:headers:)``).
    public let clientAddress: String
    /// The connection (the live route notes there why it refused an upgrade).
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        peerAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        clientAddress = ProxiedPeers.shared.isEmpty ? peerAddress : ProxiedPeers.shared.address(of: source.channel) ?? peerAddress
        channel = source.channel
    }

    /// Bodies above 16 KiB are refused with 413 (INVALID_REQUEST).
    public var maxUploadSize: Int { 16 * 1_024 }
}
