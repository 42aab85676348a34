@preconcurrency import Crypto
import Foundation

/// Encrypts sensitive order fields (the delivery name, phone and address) with AES-256-GCM before they
/// leave the process, so Redis, the outbox and MongoDB only ever hold ciphertext.
///
/// A sealed value reads `fs1.<keyId>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id names the key that
/// sealed it, so keys can rotate: seal with the newest key, keep older keys for opening. The order id is
/// bound in as additional authenticated data: a ciphertext copied onto another order does not open.
public struct FieldCipher: Sendable {
    public struct Key: Sendable {
        public let id: String
        fileprivate let key: SymmetricKey

        /// `material`: 32 bytes, base64 (standard or URL-safe alphabet).
        public init(id: String, base64 material: String) throws(FieldCipherError) {
            guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw FieldCipherError("a data key id is letters, digits, '-' or '_'; got \"\(id)\"")
            }
            guard let bytes = Data(base64URLOrStandard: material), bytes.count == 32 else {
                throw FieldCipherError("a data key is 32 bytes in base64 (e.g. `openssl rand -base64 32`)")
            }
            self.id = id
            self.key = SymmetricKey(data: bytes)
        }

        /// A new random key.
        public static func generate(id: String) -> (key: Key, base64: String) {
            let material = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
            // A freshly generated key always parses.
            return (try! Key(id: id, base64: material), material)
        }
    }

    static let prefix = "fs1."
    public let sealingKey: Key
    private let keys: [String: Key]
    /// `fs1.<sealing key id>.`, the head of every value sealed here.
    private let sealedHead: [UInt8]

    /// - Parameters:
    ///   - sealing: the key new values are sealed with.
    ///   - retired: older keys, used only to open values sealed before a rotation.
    public init(sealing: Key, retired: [Key] = []) {
        sealingKey = sealing
        var keys: [String: Key] = [:]
        for key in retired { keys[key.id] = key }
        keys[sealing.id] = sealing
        self.keys = keys
        self.sealedHead = Array((Self.prefix + sealing.id + ".").utf8)
    }

    /// Seals `plaintext` for the record `context` (the order id). The plaintext and context are read in
    /// place, and the sealed value is written into one string (head, then base64url).
    public func seal(_ plaintext: String, context: String) throws(FieldCipherError) -> String {
        var plaintext = plaintext
        var context = context
        let box: AES.GCM.SealedBox
        do {
            box = try plaintext.withUTF8 { text in
                try context.withUTF8 { associated in
                    try AES.GCM.seal(UnsafeRawBufferPointer(text), using: sealingKey.key, nonce: try Self.freshNonce(),
                                     authenticating: UnsafeRawBufferPointer(associated))
                }
            }
        } catch {
            throw FieldCipherError("AES-GCM seal failed: \(error)")
        }
        guard let combined = box.combined else { throw FieldCipherError("AES-GCM produced no combined form") }
        return sealedHead.withUnsafeBufferPointer { head in
            combined.withUnsafeBytes { Base64URL.encode(buffer: $0.bindMemory(to: UInt8.self), after: head) }
        }
    }

    /// A random 96-bit nonce, the size AES-GCM takes without hashing. Drawn from the process's page of kernel
    /// randomness (each byte used once, see `RandomPool`) rather than by `AES.GCM.Nonce()`, which asks the
    /// kernel twice per seal (`SystemRandomNumberGenerator`, eight bytes per `getrandom`).
    public static func freshNonce() throws -> AES.GCM.Nonce {
        let bits: (UInt64, UInt32) = RandomPool.shared.next96()
        return try withUnsafeBytes(of: bits) { bytes in
            assert(bytes.count == 12, "a 96-bit nonce")
            return try AES.GCM.Nonce(data: bytes)
        }
    }

    /// Opens a value sealed by ``seal(_:context:)`` with any known key.
    public func open(_ sealed: String, context: String) throws(FieldCipherError) -> String {
        guard sealed.hasPrefix(Self.prefix) else { throw FieldCipherError("the value is not sealed") }
        let parts = sealed.dropFirst(Self.prefix.count).split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let combined = Base64URL.decode(parts[1].utf8) ?? Data(base64URLOrStandard: String(parts[1])).map(Array.init) else {
            throw FieldCipherError("the sealed value is malformed")
        }
        guard let key = keys[String(parts[0])] else { throw FieldCipherError("no data key with id \(parts[0]) is configured") }
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            let opened = try AES.GCM.open(box, using: key.key, authenticating: Array(context.utf8))
            return String(decoding: opened, as: UTF8.self)
        } catch {
            throw FieldCipherError("the sealed value does not open with key \(parts[0]) (tampered, or another order's)")
        }
    }

    /// Whether `value` has the sealed form (says nothing about which key).
    public static func isSealed(_ value: String) -> Bool { value.hasPrefix(prefix) }
}

public struct FieldCipherError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Data {
    init?(base64URLOrStandard text: String) {
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard = standard.trimmingCharacters(in: .whitespacesAndNewlines)
        while standard.count % 4 != 0 { standard.append("=") }
        self.init(base64Encoded: standard)
    }
}
