import ArgumentParser
import Replication

/// The data keys that seal delivery details, from the environment:
/// `FLASHSALE_DATA_KEY` (32 bytes, base64) with `FLASHSALE_DATA_KEY_ID` (default `k1`) seals new values;
/// `FLASHSALE_DATA_KEYS_RETIRED` (`id:base64,id:base64`) keeps older keys for reading after a rotation.
enum DataKeys {
    static func cipher(environment: [String: String]) throws -> FieldCipher {
        guard let material = environment["FLASHSALE_DATA_KEY"], !material.isEmpty else {
            throw ValidationError("FLASHSALE_DATA_KEY must be set: 32 random bytes in base64 (`flashsale keygen` prints one); it seals customers' delivery details")
        }
        do {
            let sealing = try FieldCipher.Key(id: environment["FLASHSALE_DATA_KEY_ID"] ?? "k1", base64: material)
            var retired: [FieldCipher.Key] = []
            for entry in (environment["FLASHSALE_DATA_KEYS_RETIRED"] ?? "").split(separator: ",") where !entry.isEmpty {
                let parts = entry.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { throw FieldCipherError("FLASHSALE_DATA_KEYS_RETIRED entries are id:base64") }
                retired.append(try FieldCipher.Key(id: String(parts[0]), base64: String(parts[1])))
            }
            return FieldCipher(sealing: sealing, retired: retired)
        } catch {
            throw ValidationError("data key: \(error)")
        }
    }
}

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Print a new random data key (base64) for FLASHSALE_DATA_KEY."
    )

    func run() {
        print(FieldCipher.Key.generate(id: "k1").base64)
    }
}
