import Foundation
import HTTPTypes

/// One IP address as bytes: 4 for IPv4, 16 for IPv6 (an IPv4-mapped IPv6 address is read as its IPv4).
struct IPAddress: Hashable, Sendable {
    let bytes: [UInt8]

    init?(_ text: some StringProtocol) {
        var text = Substring(text)
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") { text = text[text.index(after: text.startIndex)..<close] }
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }  // a zone (fe80::1%eth0)
        guard !text.isEmpty, text.utf8.count <= 45 else { return nil }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, String(text), &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, String(text), &v6) == 1 {
            let all = withUnsafeBytes(of: &v6) { Array($0) }
            bytes = all[0..<10].allSatisfy({ $0 == 0 }) && all[10] == 0xFF && all[11] == 0xFF ? Array(all[12...]) : all
        } else {
            return nil
        }
    }

    init(bytes: [UInt8]) {
        precondition(bytes.count == 4 || bytes.count == 16)
        self.bytes = bytes
    }

    var isIPv4: Bool { bytes.count == 4 }

    /// The rate-limit key: the address for IPv4, its /64 for IPv6 (one subscriber's whole allocation: a host
    /// picks any of its 2^64 addresses at will).
    var bucketKey: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}

/// The proxies whose word on the client is taken (`FLASHSALE_TRUSTED_PROXIES`: CIDRs, comma-separated, none by
/// default). From a trusted peer the client is the rightmost `X-Forwarded-For` (or, when the proxies write that
/// instead, `Forwarded: for=`) entry that is not itself trusted; from any other peer these headers, and
/// `X-Request-Start`, mean nothing.
public struct TrustedProxies: Sendable, Hashable {
    struct Network: Sendable, Hashable {
        let address: IPAddress
        let prefixLength: Int

        func contains(_ other: IPAddress) -> Bool {
            guard other.bytes.count == address.bytes.count else { return false }
            var left = prefixLength
            for index in 0..<address.bytes.count where left > 0 {
                let bits = min(8, left)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if address.bytes[index] & mask != other.bytes[index] & mask { return false }
                left -= bits
            }
            return true
        }
    }

    /// The header the proxies write (`FLASHSALE_FORWARDED_HEADER`): the other one is whatever the client sent (haproxy's
    /// `option forwardfor` and ingress-nginx append to `X-Forwarded-For` and pass a client's `Forwarded` through), so
    /// only one is read.
    public enum Header: String, Sendable, Hashable, CaseIterable {
        case xForwardedFor = "X-Forwarded-For"
        case forwarded = "Forwarded"
    }

    let networks: [Network]
    public var header = Header.xForwardedFor

    public static let none = TrustedProxies(networks: [])

    init(networks: [Network]) {
        self.networks = networks
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    /// `10.0.0.0/8, 192.168.1.7, fd00::/8`; an address without a length is one host. At most 64 networks.
    public init(parsing text: String) throws(ParseError) {
        var networks: [Network] = []
        for item in text.split(separator: ",") {
            let entry = item.trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty else { continue }
            let parts = entry.split(separator: "/", maxSplits: 1)
            guard let address = IPAddress(parts[0]) else { throw ParseError(description: "\(entry.debugDescription) is not an IP address or CIDR") }
            let maximum = address.isIPv4 ? 32 : 128
            var length = maximum
            if parts.count == 2 {
                guard let parsed = Int(parts[1]), (0...maximum).contains(parsed) else {
                    throw ParseError(description: "\(entry.debugDescription): the prefix length must be 0...\(maximum)")
                }
                length = parsed
            }
            networks.append(Network(address: address, prefixLength: length))
        }
        guard networks.count <= 64 else { throw ParseError(description: "at most 64 networks") }
        self.networks = networks
    }

    public var isEmpty: Bool { networks.isEmpty }

    func contains(_ address: IPAddress) -> Bool { networks.contains { $0.contains(address) } }

    func contains(_ text: String) -> Bool {
        guard !networks.isEmpty, let address = IPAddress(text) else { return false }
        return contains(address)
    }

    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let forwarded = HTTPField.Name("Forwarded")!
    /// Entries read from the forwarding headers at most (a longer chain is a client padding them).
    static let maximumHops = 32

    /// The client behind `peer` (the connection's peer, or the address a PROXY protocol header declared): the
    /// rate-limit key of the rightmost untrusted hop of ``header``.
    func clientKey(peer: String, headers: HTTPFields) -> String {
        guard let peerAddress = IPAddress(peer) else { return peer }
        guard contains(peerAddress) else { return peerAddress.bucketKey }
        var hops: [Substring] = []
        if header == .forwarded {
            for value in headers[values: Self.forwarded] {
                for element in value.split(separator: ",") {
                    for pair in element.split(separator: ";") {
                        let trimmed = pair.trimmingCharacters(in: .whitespaces)
                        guard trimmed.lowercased().hasPrefix("for=") else { continue }
                        var node = Substring(trimmed.dropFirst(4))
                        if node.hasPrefix("\""), node.hasSuffix("\""), node.count >= 2 { node = node.dropFirst().dropLast() }
                        hops.append(Self.withoutPort(node))
                    }
                }
            }
        } else {
            for value in headers[values: Self.forwardedFor] {
                for entry in value.split(separator: ",") { hops.append(Self.withoutPort(Substring(entry.trimmingCharacters(in: .whitespaces)))) }
            }
        }
        var client = peerAddress
        for hop in hops.suffix(Self.maximumHops).reversed() {
            // An entry that is no address ("unknown", an obfuscated node, garbage a client wrote) ends the walk:
            // the last hop known is the client.
            guard let address = IPAddress(hop) else { break }
            client = address
            if !contains(address) { break }
        }
        return client.bucketKey
    }

    /// `1.2.3.4:80` -> `1.2.3.4`, `[::1]:80` -> `[::1]`; a bare IPv6 address is left whole.
    static func withoutPort(_ node: Substring) -> Substring {
        if node.hasPrefix("["), let close = node.firstIndex(of: "]") { return node[...close] }
        if node.filter({ $0 == ":" }).count == 1, let colon = node.firstIndex(of: ":") { return node[..<colon] }
        return node
    }
}
