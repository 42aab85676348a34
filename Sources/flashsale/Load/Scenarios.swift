import AsyncHTTPClient
import Foundation
import HTTPFront
import NIOHTTP1

/// The load scenarios. Every loop is bounded by a count and a deadline.
struct Scenarios {
    let client: LoadClient
    let tokens: BearerTokens
    let origin: ContinuousClock.Instant
    /// Stop everything at this instant, whatever happens.
    let deadline: ContinuousClock.Instant
    /// Prefixes every customer id: load generators run side by side (`--shard-index`) never share a customer.
    var customerPrefix = ""
    static let maxAttemptsPerCustomer = 50
    static let orderBody = #"{"quantity":1,"delivery":{"name":"Load Test","phone":"5550100","address":"1 Main St"}}"#

    func milliseconds(since instant: ContinuousClock.Instant) -> Double {
        let elapsed = origin.duration(to: instant)
        return Double(elapsed.components.seconds) * 1_000 + Double(elapsed.components.attoseconds) / 1e15
    }

    func token(_ customer: String) -> String {
        tokens.sign(subject: customer, admin: false, expiresAt: Date().addingTimeInterval(3_600))
    }

    /// One attempt; transport failures become a TRANSPORT_ERROR result instead of ending the customer.
    func attempt(_ record: inout CustomerRecord, saleID: String, token: String, quantity: Int, idempotencyKey: String?,
                 intendedStart: ContinuousClock.Instant = .now) async -> LoadResponse? {
        let sentAt = milliseconds(since: intendedStart)
        if record.firstAttemptMilliseconds == nil { record.firstAttemptMilliseconds = sentAt }
        let body = Self.orderBody.replacingOccurrences(of: #""quantity":1"#, with: #""quantity":\#(quantity)"#)
        do {
            let response = try await client.send(.POST, "/sales/\(saleID)/orders", token: token, json: body,
                                                 headers: idempotencyKey.map { [("Idempotency-Key", $0)] } ?? [], intendedStart: intendedStart)
            let result = response.status == 201 || response.status == 202 ? String(response.status) : (response.code ?? String(response.status))
            record.requests.append(RequestRecord(sentAtMilliseconds: sentAt, latencyMicroseconds: response.latencyNanoseconds / 1_000, result: result))
            return response
        } catch {
            record.requests.append(RequestRecord(sentAtMilliseconds: sentAt, latencyMicroseconds: 30_000_000, result: "TRANSPORT_ERROR"))
            return nil
        }
    }

    /// A flash-crowd customer: waits for the opening, orders, retries RETRY_LATER / RATE_LIMITED /
    /// SALE_NOT_STARTED, follows a waitlist position until served or the sale closes.
    func flashCrowdCustomer(index: Int, saleID: String, opensAt: ContinuousClock.Instant, quantity: Int) async -> CustomerRecord {
        let customer = "\(customerPrefix)crowd-\(index)"
        var record = CustomerRecord(customerID: customer)
        let token = token(customer)
        // Warm the connection before the opening, so each customer orders over its own open connection.
        _ = try? await client.send(.GET, "/sales/\(saleID)/stock", token: token)
        try? await Task.sleep(until: opensAt, clock: .continuous)
        let key = "\(customerPrefix)crowd-\(index)-checkout"
        for _ in 0..<Self.maxAttemptsPerCustomer where ContinuousClock.now < deadline {
            guard let response = await attempt(&record, saleID: saleID, token: token, quantity: quantity, idempotencyKey: key) else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            switch (response.status, response.code) {
            case (201, _):
                record.outcome = "confirmed"
                record.confirmedUnits = quantity
                record.confirmedAtMilliseconds = milliseconds(since: .now)
                return record
            case (202, _):
                return await followWaitlist(record, saleID: saleID, token: token, quantity: quantity)
            case (_, "SALE_NOT_STARTED"), (_, "RETRY_LATER"), (_, "RATE_LIMITED"):
                try? await Task.sleep(for: .milliseconds(response.code == "SALE_NOT_STARTED" ? 50 : 200 * max(1, min(response.retryAfterSeconds ?? 1, 5))))
            default:
                record.outcome = response.code ?? "HTTP_\(response.status)"
                return record
            }
        }
        record.outcome = "gave_up"
        return record
    }

    /// Polls /me every 500 ms until the waitlist entry became an order or left the list.
    func followWaitlist(_ record: CustomerRecord, saleID: String, token: String, quantity: Int) async -> CustomerRecord {
        var record = record
        record.outcome = "waitlist_unserved"
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(500))
            guard let me = try? await client.send(.GET, "/sales/\(saleID)/me", token: token) else { continue }
            if let purchased = me.body["purchased"] as? Int, purchased > 0 {
                record.outcome = "waitlist_served"
                record.confirmedUnits = purchased
                record.confirmedAtMilliseconds = milliseconds(since: .now)
                return record
            }
            if me.body["waitlist"] is NSNull { return record }
        }
        return record
    }

    /// One order of one unit by a fresh customer, recorded.
    func singleOrder(customer: String, saleID: String, intendedStart: ContinuousClock.Instant) async -> CustomerRecord {
        var record = CustomerRecord(customerID: customer)
        let response = await attempt(&record, saleID: saleID, token: token(customer), quantity: 1, idempotencyKey: nil, intendedStart: intendedStart)
        if response?.status == 201 {
            record.outcome = "confirmed"
            record.confirmedUnits = 1
            record.confirmedAtMilliseconds = milliseconds(since: .now)
        } else {
            record.outcome = record.requests.last?.result ?? "none"
        }
        return record
    }

    /// Closed loop: `connections` workers, each ordering as fresh customers back to back until the deadline.
    func closedLoopWorker(worker: Int, saleID: String, until end: ContinuousClock.Instant, maxRequests: Int) async -> [CustomerRecord] {
        var records: [CustomerRecord] = []
        var sequence = 0
        while ContinuousClock.now < end, sequence < maxRequests {
            let customer = "\(customerPrefix)loop-\(worker)-\(sequence)"
            sequence += 1
            records.append(await singleOrder(customer: customer, saleID: saleID, intendedStart: .now))
        }
        return records
    }

    /// Open loop: one order from a fresh customer every 1/rate seconds; latency counts from the intended send.
    func openLoop(saleID: String, ratePerSecond: Double, seconds: Double) async -> [CustomerRecord] {
        let total = Int(ratePerSecond * seconds)
        let start = ContinuousClock.now + .milliseconds(200)
        return await withTaskGroup(of: CustomerRecord.self) { group in
            for index in 0..<total {
                let intended = start + .nanoseconds(Int64(Double(index) / ratePerSecond * 1e9))
                guard intended < deadline else { break }
                try? await Task.sleep(until: intended, clock: .continuous)
                group.addTask { await singleOrder(customer: "\(customerPrefix)open-\(index)", saleID: saleID, intendedStart: intended) }
            }
            var records: [CustomerRecord] = []
            for await record in group { records.append(record) }
            return records
        }
    }
}
