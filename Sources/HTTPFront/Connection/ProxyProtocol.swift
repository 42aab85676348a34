import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// PROXY protocol version 2 (haproxy `send-proxy-v2`, AWS NLB, GCP and Azure load balancers), read before
/// anything else on a connection when `FLASHSALE_PROXY_PROTOCOL=true`: the binary header names the client's
/// address, which then counts as the connection's peer for rate limits and the forwarding headers.
///
/// Only a trusted peer (``TrustedProxies``) may send it; any other connection, or one whose first bytes are not
/// a version 2 header, is closed without an answer (the balancer speaks the protocol on every connection, so a
/// connection without it did not come through the balancer). A `LOCAL` header (the balancer's own health check)
/// keeps the peer as it is. The header is at most 16 + 2,048 bytes; TLVs are skipped.
final class ProxyProtocolDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let maximumAddressBytes = 2_048

    private let trusted: TrustedProxies
    private let logger: Logger
    private var buffered: ByteBuffer?

    init(trusted: TrustedProxies, logger: Logger) {
        self.trusted = trusted
        self.logger = logger
    }

    private var checkedPeer = false

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { checkPeer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        checkPeer(context)
        context.fireChannelActive()
    }

    private func checkPeer(_ context: ChannelHandlerContext) {
        guard !checkedPeer else { return }
        checkedPeer = true
        guard let peer = context.channel.remoteAddress?.ipAddress, trusted.contains(peer) else {
            logger.debug("PROXY protocol from an untrusted peer refused", metadata: ["peer": "\(context.channel.remoteAddress?.ipAddress ?? "?")"])
            context.close(promise: nil)
            return
        }
    }

    /// What the bytes so far say: not enough yet, a header of `length` bytes declaring `source` (nil: LOCAL or
    /// an unspecified family), or not a version 2 header.
    enum Parsed: Equatable {
        case needMore
        case header(length: Int, source: String?)
        case invalid(String)
    }

    static func parse(_ bytes: ByteBuffer) -> Parsed {
        let view = bytes.readableBytesView
        for (index, byte) in view.prefix(signature.count).enumerated() where byte != signature[index] {
            return .invalid("not a PROXY protocol v2 header")
        }
        guard view.count >= 16 else { return .needMore }
        let start = view.startIndex
        let versionCommand = view[start + 12]
        guard versionCommand >> 4 == 2 else { return .invalid("PROXY protocol version \(versionCommand >> 4)") }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid("PROXY protocol command \(command)") }
        let family = view[start + 13]
        let length = Int(view[start + 14]) << 8 | Int(view[start + 15])
        guard length <= maximumAddressBytes else { return .invalid("PROXY protocol header of \(length) bytes") }
        guard view.count >= 16 + length else { return .needMore }
        guard command == 1 else { return .header(length: 16 + length, source: nil) }  // LOCAL
        let address = view[(start + 16)...]
        switch family {
        case 0x11, 0x12:  // TCP or UDP over IPv4: source, destination, source port, destination port
            guard length >= 12 else { return .invalid("short IPv4 addresses") }
            return .header(length: 16 + length, source: IPAddress(bytes: Array(address.prefix(4))).bucketKeyText)
        case 0x21, 0x22:  // over IPv6
            guard length >= 36 else { return .invalid("short IPv6 addresses") }
            return .header(length: 16 + length, source: IPAddress(bytes: Array(address.prefix(16))).bucketKeyText)
        default:
            return .header(length: 16 + length, source: nil)  // UNSPEC or a Unix socket: the peer stays
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var pending = buffered {
            pending.writeBuffer(&incoming)
            incoming = pending
        }
        switch Self.parse(incoming) {
        case .needMore:
            buffered = incoming
        case .invalid(let reason):
            logger.debug("connection refused", metadata: ["reason": "\(reason)"])
            buffered = nil
            context.close(promise: nil)
        case .header(let length, let source):
            buffered = nil
            if let source { ProxiedPeers.shared.record(source, for: context.channel) }
            incoming.moveReaderIndex(forwardBy: length)
            // What came with the header is the connection's first bytes: passed on before this handler leaves.
            if incoming.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(incoming)) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

/// Puts a ``ProxyProtocolDecoder`` in front of a server child channel (before TLS: the balancer passes TLS through).
struct ProxyProtocolChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let trusted: TrustedProxies

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(ProxyProtocolDecoder(trusted: trusted, logger: logger), position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension IPAddress {
    /// The address as text (what `SocketAddress.ipAddress` would print).
    var bucketKeyText: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }
}

/// The client addresses PROXY protocol headers declared, by connection, while the connection lives (the
/// request context is made off the event loop, where the pipeline cannot be read).
final class ProxiedPeers: Sendable {
    static let shared = ProxiedPeers()
    private static let shardCount = 16
    private final class Shard: Sendable {
        let peers = Mutex<[ObjectIdentifier: String]>([:])
    }
    private let shards: [Shard] = (0..<ProxiedPeers.shardCount).map { _ in Shard() }

    private func shard(_ id: ObjectIdentifier) -> Shard {
        shards[Int(UInt(bitPattern: id.hashValue) % UInt(Self.shardCount))]
    }

    func record(_ address: String, for channel: any Channel) {
        let id = ObjectIdentifier(channel)
        if !used.load(ordering: .relaxed) { used.store(true, ordering: .relaxed) }
        shard(id).peers.withLock { $0[id] = address }
        channel.closeFuture.whenComplete { [self] _ in
            _ = shard(id).peers.withLock { $0.removeValue(forKey: id) }
        }
    }

    func address(of channel: any Channel) -> String? {
        let id = ObjectIdentifier(channel)
        return shard(id).peers.withLock { $0[id] }
    }

    var count: Int { shards.reduce(0) { total, shard in total + shard.peers.withLock { $0.count } } }

    /// No PROXY protocol connection was ever recorded (the listener does not read the protocol): the request
    /// path skips the look-up.
    var isEmpty: Bool { !used.load(ordering: .relaxed) }
    private let used = Atomic(false)
}
