import Foundation
import Logging
import Synchronization

/// One JSON object per line on standard error: `{"ts","level","label","msg",...metadata}`. Hummingbird
/// puts the request id into each request's logger metadata (`hb.request.id`), so request lines carry it.
public struct JSONLogHandler: LogHandler {
    private static let output = Mutex<Void>(())
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: Any] = [
            "ts": Timestamps.format(milliseconds: Int64(Date().timeIntervalSince1970 * 1_000)),
            "level": event.level.rawValue,
            "label": label,
            "msg": event.message.description,
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            object[key] = value.description
        }
        guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        line.append(0x0A)
        Self.output.withLock { _ in
            line.withUnsafeBytes { bytes in
                var offset = 0
                // Bounded: a write that makes no progress ends the attempt.
                for _ in 0..<64 where offset < bytes.count {
                    let written = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
        }
    }
}
