/// Redis Cluster's key space: 16,384 slots; a key's slot is the CRC16 (XMODEM) of its hash tag — the text
/// between the first `{` and the next `}` when that is not empty — or of the whole key.
///
/// Every key of a sale carries the tag `{saleID}` (see ``LedgerKeys``), so a sale lives in one slot and its
/// scripts run on one node.
public enum ClusterSlots {
    public static let count = 16_384

    public static func slot(of key: String) -> Int {
        var key = key
        return key.withUTF8 { slot(of: $0) }
    }

    public static func slot(of key: UnsafeBufferPointer<UInt8>) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            hashed = key[(open + 1)..<close]
        }
        var crc: UInt16 = 0
        for byte in hashed {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return Int(crc) & (count - 1)
    }

    /// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as in the Redis Cluster specification.
    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    /// Commands that name no key: a cluster connection sends them to the node of the command before
    /// (`WAIT` after a commit, `MULTI`/`EXEC` after `WATCH`), or to any node.
    private static let keyless: Set<String> = [
        "ASKING", "AUTH", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DBSIZE", "DISCARD", "ECHO", "EXEC", "FLUSHALL",
        "FLUSHDB", "HELLO", "INFO", "LASTSAVE", "MULTI", "PING", "READONLY", "READWRITE", "ROLE", "SCRIPT", "SELECT",
        "SLOWLOG", "TIME", "UNWATCH", "WAIT", "WAITAOF",
    ]

    /// The slot of the key that routes `command` (the first key it names), or nil for a command without
    /// keys. Knows the key positions of every command the service sends: the first argument, the first
    /// key of `EVAL`/`EVALSHA`, the first stream of `XREAD`/`XREADGROUP`.
    public static func routingSlot(of command: RedisCommand) -> Int? {
        let arguments = command.lengths
        guard !arguments.isEmpty else { return nil }
        return command.bytes.withUnsafeBufferPointer { bytes -> Int? in
            var starts = [0]
            func argument(_ index: Int) -> UnsafeBufferPointer<UInt8> {
                while starts.count <= index { starts.append(starts[starts.count - 1] + arguments[starts.count - 1]) }
                return UnsafeBufferPointer(rebasing: bytes[starts[index]..<(starts[index] + arguments[index])])
            }
            let name = String(decoding: argument(0), as: UTF8.self).uppercased()
            switch name {
            case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
                guard arguments.count > 3, Int(String(decoding: argument(2), as: UTF8.self)) ?? 0 > 0 else { return nil }
                return slot(of: argument(3))
            case "XREAD", "XREADGROUP":
                for index in 1..<arguments.count where String(decoding: argument(index), as: UTF8.self).uppercased() == "STREAMS" {
                    return index + 1 < arguments.count ? slot(of: argument(index + 1)) : nil
                }
                return nil
            default:
                guard !keyless.contains(name), arguments.count > 1 else { return nil }
                return slot(of: argument(1))
            }
        }
    }
}
