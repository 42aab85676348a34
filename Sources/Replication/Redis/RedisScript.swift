/// A Lua script run with `EVALSHA`. The connection loads it once with `SCRIPT LOAD` and loads it again
/// transparently when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
public struct RedisScript: Sendable, Hashable {
    /// A short name for logs and metrics.
    public let name: String
    public let source: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
    }
}
