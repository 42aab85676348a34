/// The Redis keys of one sale. Every key carries the hash tag `{saleID}`, so a sale lives in one Redis
/// Cluster slot and every ledger script can touch all of them atomically.
public struct LedgerKeys: Sendable, Hashable {
    public let saleID: String

    public init(saleID: String) {
        self.saleID = saleID
    }

    private func key(_ suffix: String) -> String { "fs:{\(saleID)}:\(suffix)" }

    public var meta: String { key("meta") }
    public var pool: String { key("pool") }
    public var sold: String { key("sold") }
    public var fence: String { key("fence") }
    public var leases: String { key("leases") }
    public var users: String { key("users") }
    public var idempotency: String { key("idem") }
    public var orders: String { key("orders") }
    /// Order events for MongoDB: cancellations, and the orders the waitlist or the direct path created, each
    /// entry carrying its order's facts.
    public var outbox: String { key("outbox") }
    /// The commit log: one entry per commit batch, naming its orders by id (`ids`, space-separated) and
    /// nothing else; the drainer reads their records from ``orders``. Apart from the outbox, so that a drainer
    /// of an earlier version (which skips an entry it cannot read) never sees one during a rolling upgrade.
    /// Retirement waits for it to be empty (`retire_sale.lua`), so every record it names is still there.
    public var commits: String { key("commits") }
    public var stockLog: String { key("stocklog") }
    public var waitlist: String { key("waitlist") }
    public var waiters: String { key("waiters") }
    public var stats: String { key("stats") }
    /// The cancelled and failed orders of each customer (a sorted set read by lexicographic range, for
    /// "my orders"; see `past_member` in the scripts' prelude). A customer's orders that hold units are in
    /// their `users` entry.
    public var customers: String { key("customer-orders") }
    /// Stream of waitlist entries served from freed units (customer, orderId, quantity), for live pushes.
    public var served: String { key("served") }
    /// The final summary (JSON), written once at close.
    public var summary: String { key("summary") }

    /// The order every ledger script expects its KEYS in (see `LedgerScripts.prelude`).
    public var all: [String] {
        [meta, pool, sold, fence, leases, users, idempotency, orders, outbox, stockLog, waitlist, waiters, stats, customers, served, commits]
    }

    /// The KEYS of the scripts that may run after a sale closed or retired (see `retention.lua`): ``all``, then
    /// the summary. Retirement gives each of them the retention TTL.
    public var retained: [String] { all + [summary] }

    /// The channel on which stock changes of the sale are announced.
    public var channel: String { key("events") }

    /// The registries across sales share the hash tag `{registry}`: on Redis Cluster they live in one slot, so a
    /// transaction may cover all three (see `OutboxDrainer.forgetExpiredSales`). No script touches them with a
    /// sale's keys (they are in another slot).
    ///
    /// Sales whose lifecycle is not settled yet (scheduled or open, or closed without a stored summary).
    public static let activeSales = "fs:{registry}:sales:active"
    /// Every sale id whose keys are still in Redis, scored by start time.
    public static let allSales = "fs:{registry}:sales:all"
    /// Settled, drained sales scored by the time their keys expire (Redis time, ms); the drainer removes
    /// them from the registries then.
    public static let retiringSales = "fs:{registry}:sales:retiring"
    /// The registries' names before they shared a hash tag, in the order of ``registries``: a ledger written by
    /// an earlier version is moved over by `migrate_registries.lua` (``Ledger/migrateRegistries()``).
    public static let legacyRegistries = ["fs:sales:active", "fs:sales:all", "fs:sales:retiring"]
    public static let registries = [activeSales, allSales, retiringSales]
}
