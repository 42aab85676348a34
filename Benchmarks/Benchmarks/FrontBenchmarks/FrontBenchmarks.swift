import Benchmark
import Crypto
import Foundation
import HTTPFront
import NIOCore
import Replication

/// The HTTP front's per-order work: token verification, delivery sealing, order body decoding and the 201
/// answer's encoding, each next to the Foundation version it replaced (kept as the baseline, so one run
/// shows both).
let benchmarks: @Sendable () -> Void = {
    let micro = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(2))
    let secret = "bench-secret-0123456789abcdef"
    let tokens = BearerTokens(secret: secret)
    let token = tokens.sign(subject: "customer-00042", admin: false, expiresAt: Date().addingTimeInterval(3_600))

    Benchmark("Token verify (bytes, JSONObject)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(tokens.verify(token)) }
    }
    Benchmark("Token verify (Foundation baseline)", configuration: micro) { benchmark in
        let legacy = LegacyTokens(secret: secret)
        for _ in benchmark.scaledIterations { blackHole(legacy.verify(token)) }
    }

    let key = FieldCipher.Key.generate(id: "k1").key
    let cipher = FieldCipher(sealing: key)
    let delivery = #"{"name":"Ada Lovelace","phone":"+44 20 7946 0000","address":"12 St James's Square, London"}"#
    Benchmark("Delivery seal (AES-GCM, base64url on bytes)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? cipher.seal(delivery, context: "delivery/sale/customer-00042")) }
    }
    Benchmark("Seal nonce (page of kernel randomness)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? FieldCipher.freshNonce()) }
    }
    Benchmark("Seal nonce (AES.GCM.Nonce(), baseline)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(AES.GCM.Nonce()) }
    }
    Benchmark("Delivery seal (Foundation baseline)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            let box = try? AES.GCM.seal(Data(delivery.utf8), using: SymmetricKey(size: .bits256), authenticating: Data("delivery/sale/customer-00042".utf8))
            blackHole(box?.combined.map { $0.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "") })
        }
    }

    let body = ByteBuffer(string: #"{"quantity":1,"delivery":{"name":"Ada Lovelace","phone":"+44 20 7946 0000","address":"12 St James's Square, London"}}"#)
    Benchmark("Order body decode (bytes, JSONObject)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? OrderPathSteps.decodeOrderBody(body)) }
    }
    Benchmark("Order body decode (JSONDecoder baseline)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? OrderPathSteps.decodeOrderBodyWithJSONDecoder(body)) }
    }

    let record = OrderRecord(orderID: "sale-1.0000a1b2c3d4", customerID: "customer-00042", quantity: 1, createdAtMilliseconds: 1_764_201_600_000,
                             status: .confirmed, idempotencyKey: "", delivery: "", shardID: "", fence: 0, instanceID: "", source: "bucket")
    Benchmark("Order answer encode (hand-written)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(OrderPathSteps.orderAnswer(record, saleID: "sale-1")) }
    }
    Benchmark("Order answer encode (JSONEncoder baseline)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? OrderPathSteps.orderAnswerWithJSONEncoder(record, saleID: "sale-1")) }
    }
}

/// The verifier before the byte-level one: Foundation base64 with alphabet rewriting, JSONSerialization,
/// a key built per call. Benchmark baseline only.
struct LegacyTokens {
    let secret: Data
    init(secret: String) { self.secret = Data(secret.utf8) }

    func verify(_ token: String) -> String? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.decode(parts[0]), let payload = Self.decode(parts[1]), let signature = Self.decode(parts[2]),
              let headerObject = try? JSONSerialization.jsonObject(with: header) as? [String: Any], headerObject["alg"] as? String == "HS256",
              HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: Data((parts[0] + "." + parts[1]).utf8), using: SymmetricKey(data: secret)),
              let claims = try? JSONSerialization.jsonObject(with: payload) as? [String: Any], let subject = claims["sub"] as? String,
              let expiry = (claims["exp"] as? NSNumber)?.doubleValue, expiry + 30 > Date().timeIntervalSince1970
        else { return nil }
        return subject
    }

    static func decode(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
