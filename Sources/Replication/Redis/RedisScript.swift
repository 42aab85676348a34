import Crypto

/// A Lua script run with `EVALSHA`. The connection loads it once with `SCRIPT LOAD` and loads it again
/// transparently when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
public struct RedisScript: Sendable, Hashable {
    /// A short name for logs and metrics.
    public let name: String
    public let source: String
    /// The SHA1 of `source` in lowercase hex: the name Redis gives the script. Computed once here, so an
    /// `EVALSHA` neither hashes nor compares the source (the ledger's scripts are ~15 KB each).
    public let digest: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(2 * Insecure.SHA1.byteCount)
        for byte in Insecure.SHA1.hash(data: Array(source.utf8)) {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0f)])
        }
        self.digest = String(decoding: text, as: UTF8.self)
    }
}
