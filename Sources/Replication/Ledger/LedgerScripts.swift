/// The Lua scripts of the ledger. Every ledger mutation is one script, so it is atomic in Redis; every
/// script reads time with Redis `TIME`, never an instance clock. KEYS are always `LedgerKeys.all`.
///
/// Lease records (`leases` hash, field = shard id) are JSON: `{o: owner, f: fence, r: remaining, e: expiresAtMs}`.
/// Order records (`orders` hash, field = order id) are JSON: `{id, c: customer, q, t: createdAtMs,
/// s: status, k: idempotency key, d: delivery, sh: shard, f: fence, i: instance, src: "bucket"|"waitlist"}`.
///
/// Invariant kept by every script: `pool + Σ leases.r + sold == stock`, `0 <= sold <= stock`,
/// `users[c] <= limit`. Scripts check preconditions before writing (a Redis script that fails halfway
/// keeps its earlier writes), and the scripts that move units between pool and leases verify the
/// invariant afterwards and answer an `INVARIANT` error if it broke, which callers treat as fatal.
public enum LedgerScripts {
    /// Prepended to every script: the KEYS table, Redis time, the invariant check and the shared helpers.
    static let prelude = String(decoding: PackageResources.prelude_lua, as: UTF8.self)

    /// ARGV: id, name, stock, startMs, endMs, limit. Answers `{OK, nowMs}` or `{EXISTS}`.
    public static let createSale = script("create_sale", PackageResources.create_sale_lua)

    /// ARGV: owner, shardId, maxShardUnits, spreadFactor, ttlMs, minUnits (the quantity that asked; a
    /// shard smaller than one order could never serve it).
    /// Answers `{OK, fence, units, expiresAtMs, nowMs}`, `{EMPTY, sold, leased, waitlist}`,
    /// `{CLOSED, reason}`, `{NOT_STARTED, msUntilStart}` or `{NOT_FOUND}`.
    public static let acquireLease = script("acquire_lease", PackageResources.acquire_lease_lua)

    /// ARGV: owner, ttlMs, count, then `count` pairs of shardId, fence.
    /// Answers `{status, closedReason, sold, pool, leased, waitlist, stock, nowMs, {per lease: remaining or -1 when lost}}`.
    public static let renewLeases = script("renew_leases", PackageResources.renew_leases_lua)

    /// ARGV: owner, shardId, fence. Gives the lease's remaining units back to the pool (waitlist first).
    /// Answers `{OK, returnedUnits}` or `{LOST}`.
    public static let returnLease = script("return_lease", PackageResources.return_lease_lua)

    /// ARGV: owner, count, plain ("1" when `Ledger.isPlainJSONText` holds for the owner and every order's
    /// id, shard, customer, key and delivery: the records are then written without the JSON escaper), replay
    /// ("1" when the batch may have been applied already: its order ids are then looked up), leases (how many
    /// distinct leases its orders were taken from), then that many pairs shardId, fence, then `count` groups of
    /// 6: orderId, lease (the 1-based index of its pair), customer, quantity, idempotencyKey ("" for none),
    /// delivery (``Ledger/encodeCommit(owner:_:replay:)``).
    /// Answers one element per order, in order: `createdAtMs` (an integer: committed), `{DUP, orderRecordJSON}`
    /// (already in the ledger: this order replayed, or the customer's idempotency key), `{WAITING, position}`,
    /// `{LIMIT, purchased}`, `{FENCED}` or `{CLOSED, reason}`. Writes one commit-log entry naming the committed
    /// orders (``LedgerKeys/commits``).
    public static let commitBatch = script("commit_batch", PackageResources.commit_batch_lua)

    /// ARGV: orderId, customer ("" when an admin cancels). A compensating transaction: the units go to the
    /// waitlist head or the pool, the customer's count drops. Answers `{OK, recordJSON}`, `{NOT_FOUND}`
    /// or `{CLOSED, reason}`. Cancelling a cancelled (or failed) order answers OK with it, unchanged.
    public static let cancelOrder = script("cancel_order", PackageResources.cancel_order_lua)

    /// Appended to the prelude of the scripts that may run after a sale closed or retired (never the order
    /// path's): the summary key (KEYS[17]), the retention TTL kept on keys written after retirement, and the
    /// summary computed in Lua.
    static let retention = String(decoding: PackageResources.retention_lua, as: UTF8.self)

    /// KEYS: `LedgerKeys.retained`. ARGV: orderId, reason. The compensating transaction for an order the order
    /// store refused for good: the order is marked `failed`, its units go back (waitlist head first, else the
    /// pool), the customer's count drops and the idempotency key is freed (the attempt bought nothing). Nothing
    /// goes to the outbox. After close, a stored summary is recomputed and stored in the same step. Answers
    /// `{OK, recordJSON, closedBefore}`, `{UNCHANGED, recordJSON}` when the order is no longer confirmed, or `{NOT_FOUND}`.
    public static let failOrder = script("fail_order", PackageResources.fail_order_lua, after: retention)

    /// KEYS: `LedgerKeys.retained`. The stored summary, or the live one; stores it once when the sale is closed.
    /// Answers `{STORED, json}`, `{LIVE, json}` or `{NOT_FOUND}`.
    public static let storeSummary = script("store_summary", PackageResources.store_summary_lua, after: retention)

    /// KEYS: `LedgerKeys.retained`. ARGV: pairs of code, count. Adds rejection counts; nothing once the sale is
    /// gone. Answers 1, or 0 when the sale is gone.
    public static let addRejections = script("add_rejections", PackageResources.add_rejections_lua, after: retention)

    /// KEYS: `LedgerKeys.retained`. ARGV: group. Creates the drainer's consumer groups while the sale exists.
    /// Answers `{OK}` or `{NOT_FOUND}`.
    public static let ensureGroups = script("ensure_groups", PackageResources.ensure_groups_lua, after: retention)

    /// KEYS: `LedgerKeys.retained`. ARGV: retentionSeconds, group, summary, then the meta pairs written to
    /// MongoDB. Gives every key the retention TTL on a fresh atomic read. Answers `{RETIRED, nowMs}`,
    /// `{CHANGED}`, `{BACKLOG}` or `{NOT_FOUND}`.
    public static let retireSale = script("retire_sale", PackageResources.retire_sale_lua, after: retention)

    /// ARGV: force ("1" or "0"). First step of a ledger rebuild: refuses (`{LIVE, status}`) while the sale's
    /// meta exists unless forced; otherwise deletes every key of the sale (a half-finished earlier rebuild
    /// never wrote meta, so it is wiped too) and answers `{OK}`.
    public static let restoreBegin = script("restore_begin", PackageResources.restore_begin_lua)

    /// ARGV: n, then n × (orderId, customer, quantity, status, recordJSON, idempotencyKey). Restores a chunk
    /// of orders in their original order (callers send them sorted by outbox position); only confirmed
    /// orders count towards sold and the customer's total. Refuses once meta exists (the rebuild finished).
    public static let restoreOrders = script("restore_orders", PackageResources.restore_orders_lua)

    /// ARGV: then the meta hash as field/value pairs (must include stock and status), fence. The last step
    /// of a rebuild: pool = stock - sold, the fence above every fence seen, meta written (the ledger is live
    /// again). Answers `{OK, pool, sold}` or an `INVARIANT` error when the orders exceed the stock.
    public static let restoreFinish = script("restore_finish", PackageResources.restore_finish_lua)

    /// ARGV: customer, quantity, orderId, idempotencyKey, delivery, owner. Called when this instance has
    /// no unit and the ledger granted no lease. Answers `{WAITING, position}`, `{SERVED, recordJSON}`,
    /// `{DUP, recordJSON}`, `{RETRY}` (units are free: lease them), `{LIMIT, purchased}`,
    /// `{INSUFFICIENT, unsold}`, `{CLOSED, reason}`, `{NOT_STARTED, ms}` or `{NOT_FOUND}`.
    public static let joinWaitlist = script("join_waitlist", PackageResources.join_waitlist_lua)

    /// ARGV: mode: "auto" (close if the end passed or all is sold), "ended" or "sold_out" (force).
    /// Answers `{status, closedReason}`.
    public static let closeSale = script("close_sale", PackageResources.close_sale_lua)

    /// Read-only, atomic view of a sale: `{metaFlat, pool, sold, leasesFlat, waitlist, statsFlat, buyers, nowMs}`.
    public static let snapshot = script("snapshot", PackageResources.snapshot_lua)

    /// ARGV: owner ("" for every instance). Revokes leases (rebalance, drain): their remaining units go to
    /// the pool (waitlist first); the owners' next commits on them are fenced. Answers `{revokedLeases, returnedUnits}`.
    public static let revokeLeases = script("revoke_leases", PackageResources.revoke_leases_lua)

    /// The textbook flash-sale order path, for side-by-side comparison only: one script call per order
    /// straight against the pool (no leases, no group commit), with the same bookkeeping as a commit.
    /// ARGV: orderId, customer, quantity, idempotencyKey, delivery. Answers like one `commitBatch` element,
    /// plus `{SOLD_OUT}` and `{INSUFFICIENT, unsold}`.
    public static let directOrder = script("direct_order", PackageResources.direct_order_lua)

    /// KEYS: `LedgerKeys.legacyRegistries`, then `LedgerKeys.registries`. Without the prelude (no sale's keys).
    /// Moves registries an earlier version wrote under their untagged names; answers the entries moved.
    public static let migrateRegistries = RedisScript(name: "migrate_registries", source: String(decoding: PackageResources.migrate_registries_lua, as: UTF8.self))

    public static let all: [RedisScript] = [
        createSale, acquireLease, renewLeases, returnLease, commitBatch, cancelOrder, joinWaitlist, closeSale, snapshot,
        failOrder, restoreBegin, restoreOrders, restoreFinish,
        revokeLeases, directOrder, storeSummary, addRejections, ensureGroups, retireSale,
    ]

    private static func script(_ name: String, _ body: [UInt8], after fragment: String = "") -> RedisScript {
        RedisScript(name: name, source: prelude + fragment + String(decoding: body, as: UTF8.self))
    }
}
