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
    static let prelude = #"""
    local K = {meta = KEYS[1], pool = KEYS[2], sold = KEYS[3], fence = KEYS[4], leases = KEYS[5],
      users = KEYS[6], idem = KEYS[7], orders = KEYS[8], outbox = KEYS[9], stocklog = KEYS[10],
      waitlist = KEYS[11], waiters = KEYS[12], stats = KEYS[13], customers = KEYS[14], served = KEYS[15]}
    local MAX_SETTLE = 1000

    local function num(value) return tonumber(value) or 0 end

    local function now_ms()
      local t = redis.call('TIME')
      return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end

    local function load_meta()
      local m = redis.call('HMGET', K.meta, 'stock', 'startMs', 'endMs', 'limit', 'status', 'closedReason')
      if not m[1] then return nil end
      return {stock = tonumber(m[1]), start = tonumber(m[2]), finish = tonumber(m[3]),
        limit = tonumber(m[4]), status = m[5], reason = m[6] or ''}
    end

    local function idem_field(customer, key)
      return string.len(customer) .. ':' .. customer .. key
    end

    local function log_stock(now, reason, delta, fence, instance)
      redis.call('XADD', K.stocklog, '*', 'at', now, 'reason', reason, 'delta', delta,
        'sold', redis.call('GET', K.sold) or '0', 'pool', redis.call('GET', K.pool) or '0',
        'fence', fence or 0, 'instance', instance or '')
    end

    local function leased_total()
      local total, owners, count = 0, {}, 0
      local all = redis.call('HGETALL', K.leases)
      for i = 1, #all, 2 do
        local lease = cjson.decode(all[i + 1])
        total = total + lease.r
        if not owners[lease.o] then owners[lease.o] = true; count = count + 1 end
      end
      return total, owners, count
    end

    local function check_invariant(meta)
      local pool, sold = num(redis.call('GET', K.pool)), num(redis.call('GET', K.sold))
      local leased = leased_total()
      if pool < 0 or sold < 0 or sold > meta.stock or pool + leased + sold ~= meta.stock then
        return redis.error_reply('INVARIANT pool=' .. pool .. ' leased=' .. leased .. ' sold=' .. sold .. ' stock=' .. meta.stock)
      end
      return nil
    end

    local function reclaim_expired(now)
      local all = redis.call('HGETALL', K.leases)
      local reclaimed = 0
      for i = 1, #all, 2 do
        local lease = cjson.decode(all[i + 1])
        if lease.e <= now then
          redis.call('HDEL', K.leases, all[i])
          if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
          reclaimed = reclaimed + lease.r
          log_stock(now, 'lease_expired', lease.r, lease.f, lease.o)
        end
      end
      return reclaimed
    end

    -- Writes one confirmed order. `batched` callers add the order count to stats themselves, once.
    local function create_order(now, id, customer, quantity, key, delivery, shard, fence, instance, source, batched)
      local record = {id = id, c = customer, q = quantity, t = now, s = 'confirmed', k = key, d = delivery,
        sh = shard, f = fence, i = instance, src = source}
      redis.call('HSET', K.orders, id, cjson.encode(record))
      if key ~= '' then redis.call('HSET', K.idem, idem_field(customer, key), id) end
      redis.call('HINCRBY', K.users, customer, quantity)
      local mine = redis.call('HGET', K.customers, customer)
      redis.call('HSET', K.customers, customer, mine and (mine .. ' ' .. id) or id)
      if not batched then redis.call('HINCRBY', K.stats, 'orders', 1) end
      redis.call('XADD', K.outbox, '*', 'type', 'order', 'orderId', id, 'customer', customer,
        'quantity', quantity, 'at', now, 'status', 'confirmed', 'delivery', delivery, 'key', key,
        'shard', shard, 'fence', fence, 'instance', instance, 'source', source)
    end

    -- Takes a confirmed order out of the counts (cancellation, or the order store refusing it): its units
    -- go back to the pool and the customer's count drops. The caller has set the order's new status.
    local function release_order(order)
      local encoded = cjson.encode(order)
      redis.call('HSET', K.orders, order.id, encoded)
      redis.call('DECRBY', K.sold, order.q)
      redis.call('INCRBY', K.pool, order.q)
      if redis.call('HINCRBY', K.users, order.c, -order.q) <= 0 then redis.call('HDEL', K.users, order.c) end
      redis.call('HINCRBY', K.stats, 'orders', -1)
      redis.call('HINCRBY', K.stats, order.s, 1)
      return encoded
    end

    local function close_sale(now, reason)
      local all = redis.call('HGETALL', K.leases)
      for i = 1, #all, 2 do
        local lease = cjson.decode(all[i + 1])
        if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
      end
      redis.call('DEL', K.leases)
      local waiting = redis.call('ZCARD', K.waitlist)
      if waiting > 0 then
        redis.call('HINCRBY', K.stats, 'waitlistUnserved', waiting)
        redis.call('DEL', K.waitlist, K.waiters)
      end
      redis.call('HSET', K.meta, 'status', 'closed', 'closedReason', reason, 'closedAtMs', now)
      if reason == 'sold_out' then redis.call('HSETNX', K.meta, 'soldOutAtMs', now) end
      log_stock(now, 'closed_' .. reason, 0, 0, '')
    end

    -- Settles the waitlist head(s) from the pool in arrival order; see WaitlistModel for the rule.
    local function serve_waitlist(now, meta)
      local served = 0
      for _ = 1, MAX_SETTLE do
        local head = redis.call('ZRANGE', K.waitlist, 0, 0)
        if #head == 0 then break end
        local customer = head[1]
        local waiter = cjson.decode(redis.call('HGET', K.waiters, customer))
        local sold, pool = num(redis.call('GET', K.sold)), num(redis.call('GET', K.pool))
        local bought = num(redis.call('HGET', K.users, customer))
        if bought + waiter.q > meta.limit or waiter.q > meta.stock - sold then
          redis.call('HINCRBY', K.stats, 'waitlistUnserved', 1)
        elseif waiter.q <= pool then
          redis.call('DECRBY', K.pool, waiter.q)
          redis.call('INCRBY', K.sold, waiter.q)
          create_order(now, waiter.id, customer, waiter.q, waiter.k, waiter.d, '', 0, waiter.i, 'waitlist')
          redis.call('HINCRBY', K.stats, 'waitlistServed', 1)
          redis.call('XADD', K.served, 'MAXLEN', '~', 100000, '*', 'customer', customer, 'orderId', waiter.id, 'quantity', waiter.q)
          served = served + waiter.q
        else
          break
        end
        redis.call('ZREM', K.waitlist, customer)
        redis.call('HDEL', K.waiters, customer)
      end
      if served > 0 then log_stock(now, 'waitlist_served', -served, 0, '') end
      return served
    end

    -- Opens a scheduled sale whose start passed, closes one whose end passed or that sold out.
    -- Returns nil while the sale is open, otherwise the reply to give.
    local function settle_lifecycle(now, meta)
      if meta.status == 'closed' then return {'CLOSED', meta.reason} end
      if now < meta.start then return {'NOT_STARTED', meta.start - now} end
      if now >= meta.finish then
        close_sale(now, 'ended')
        meta.status, meta.reason = 'closed', 'ended'
        return {'CLOSED', 'ended'}
      end
      if meta.status == 'scheduled' then
        redis.call('HSET', K.meta, 'status', 'open', 'openedAtMs', now)
        meta.status = 'open'
      end
      if num(redis.call('GET', K.sold)) == meta.stock then
        close_sale(now, 'sold_out')
        meta.status, meta.reason = 'closed', 'sold_out'
        return {'CLOSED', 'sold_out'}
      end
      return nil
    end

    -- Frees expired leases into the pool and serves the waitlist from it; may close a sold-out sale.
    local function settle(now, meta)
      local gate = settle_lifecycle(now, meta)
      if gate then return gate end
      reclaim_expired(now)
      serve_waitlist(now, meta)
      return settle_lifecycle(now, meta)
    end

    """#

    /// ARGV: id, name, stock, startMs, endMs, limit. Answers `{OK, nowMs}` or `{EXISTS}`.
    public static let createSale = RedisScript(name: "create_sale", source: prelude + #"""
    if redis.call('EXISTS', K.meta) == 1 then return {'EXISTS'} end
    local now = now_ms()
    local stock = tonumber(ARGV[3])
    assert(stock and stock >= 1, 'stock must be positive')
    redis.call('HSET', K.meta, 'id', ARGV[1], 'name', ARGV[2], 'stock', stock, 'startMs', ARGV[4],
      'endMs', ARGV[5], 'limit', ARGV[6], 'status', 'scheduled', 'createdAtMs', now)
    redis.call('SET', K.pool, stock)
    redis.call('SET', K.sold, 0)
    redis.call('SET', K.fence, 0)
    log_stock(now, 'created', stock, 0, '')
    return {'OK', now}
    """#)

    /// ARGV: owner, shardId, maxShardUnits, spreadFactor, ttlMs, minUnits (the quantity that asked; a
    /// shard smaller than one order could never serve it).
    /// Answers `{OK, fence, units, expiresAtMs, nowMs}`, `{EMPTY, sold, leased, waitlist}`,
    /// `{CLOSED, reason}`, `{NOT_STARTED, msUntilStart}` or `{NOT_FOUND}`.
    public static let acquireLease = RedisScript(name: "acquire_lease", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local now = now_ms()
    local gate = settle(now, meta)
    if gate then return gate end
    local pool = num(redis.call('GET', K.pool))
    local waiting = redis.call('ZCARD', K.waitlist)
    local leased, owners, count = leased_total()
    -- Units go to waiting customers first: no new lease while someone waits.
    if pool <= 0 or waiting > 0 then
      return {'EMPTY', num(redis.call('GET', K.sold)), leased, waiting}
    end
    if not owners[ARGV[1]] then count = count + 1 end
    local units = math.floor(pool / (tonumber(ARGV[4]) * count))
    units = math.max(1, tonumber(ARGV[6]) or 1, math.min(units, tonumber(ARGV[3])))
    units = math.min(units, pool)
    local fence = redis.call('INCR', K.fence)
    local expires = now + tonumber(ARGV[5])
    -- A shard id already in the table (an earlier incarnation of the instance reusing a name) is superseded:
    -- its units go back to the pool first (its holder is fenced off by the new fence), never overwritten.
    local previous = redis.call('HGET', K.leases, ARGV[2])
    if previous then
      local lease = cjson.decode(previous)
      redis.call('HDEL', K.leases, ARGV[2])
      if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
      log_stock(now, 'lease_superseded', lease.r, lease.f, lease.o)
      pool = num(redis.call('GET', K.pool))
      units = math.min(math.max(units, 1), pool)
    end
    redis.call('HSET', K.leases, ARGV[2], cjson.encode({o = ARGV[1], f = fence, r = units, e = expires}))
    redis.call('DECRBY', K.pool, units)
    log_stock(now, 'lease_granted', -units, fence, ARGV[1])
    local broken = check_invariant(meta)
    if broken then return broken end
    return {'OK', fence, units, expires, now}
    """#)

    /// ARGV: owner, ttlMs, count, then `count` pairs of shardId, fence.
    /// Answers `{status, closedReason, sold, pool, leased, waitlist, stock, nowMs, {per lease: remaining or -1 when lost}}`.
    public static let renewLeases = RedisScript(name: "renew_leases", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local now = now_ms()
    if meta.status ~= 'closed' and now >= meta.start then settle(now, meta) end
    local results = {}
    local ttl = tonumber(ARGV[2])
    for i = 0, tonumber(ARGV[3]) - 1 do
      local shard, fence = ARGV[4 + i * 2], tonumber(ARGV[5 + i * 2])
      local raw = redis.call('HGET', K.leases, shard)
      local lease = raw and cjson.decode(raw)
      if lease and lease.o == ARGV[1] and lease.f == fence and lease.e > now then
        lease.e = now + ttl
        redis.call('HSET', K.leases, shard, cjson.encode(lease))
        results[#results + 1] = lease.r
      else
        results[#results + 1] = -1
      end
    end
    local broken = check_invariant(meta)
    if broken then return broken end
    local leased = leased_total()
    return {meta.status, meta.reason, num(redis.call('GET', K.sold)), num(redis.call('GET', K.pool)), leased,
      redis.call('ZCARD', K.waitlist), meta.stock, now, results}
    """#)

    /// ARGV: owner, shardId, fence. Gives the lease's remaining units back to the pool (waitlist first).
    /// Answers `{OK, returnedUnits}` or `{LOST}`.
    public static let returnLease = RedisScript(name: "return_lease", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local raw = redis.call('HGET', K.leases, ARGV[2])
    local lease = raw and cjson.decode(raw)
    if not lease or lease.o ~= ARGV[1] or lease.f ~= tonumber(ARGV[3]) then return {'LOST'} end
    local now = now_ms()
    redis.call('HDEL', K.leases, ARGV[2])
    if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
    log_stock(now, 'lease_returned', lease.r, lease.f, lease.o)
    settle(now, meta)
    local broken = check_invariant(meta)
    if broken then return broken end
    return {'OK', lease.r}
    """#)

    /// ARGV: owner, count, then `count` groups of 7: orderId, shardId, fence, customer, quantity,
    /// idempotencyKey ("" for none), delivery. Answers one element per order, in order:
    /// `{OK, createdAtMs}`, `{DUP, orderRecordJSON}` (already in the ledger: this order replayed, or the
    /// customer's idempotency key), `{LIMIT, purchased}`, `{FENCED}` or `{CLOSED, reason}`.
    public static let commitBatch = RedisScript(name: "commit_batch", source: prelude + #"""
    local meta = load_meta()
    local count = tonumber(ARGV[2])
    local results = {}
    if not meta then
      for i = 1, count do results[i] = {'NOT_FOUND'} end
      return results
    end
    local now = now_ms()
    local closed = nil
    if meta.status == 'closed' then
      closed = meta.reason
    elseif now >= meta.finish then
      close_sale(now, 'ended')
      closed = 'ended'
    end
    local owner = ARGV[1]
    local leases, dirty = {}, {}
    local delta, committed = 0, 0
    for i = 0, count - 1 do
      local b = 3 + i * 7
      local id, shard, fence, customer = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3]
      local quantity, key, delivery = tonumber(ARGV[b + 4]), ARGV[b + 5], ARGV[b + 6]
      local existing = redis.call('HGET', K.orders, id)
      local keyed = (not existing) and key ~= '' and redis.call('HGET', K.idem, idem_field(customer, key))
      if existing then
        results[i + 1] = {'DUP', existing}
      elseif keyed then
        results[i + 1] = {'DUP', redis.call('HGET', K.orders, keyed)}
      elseif closed then
        results[i + 1] = {'CLOSED', closed}
      else
        local lease = leases[shard]
        if lease == nil then
          local raw = redis.call('HGET', K.leases, shard)
          lease = raw and cjson.decode(raw) or false
          leases[shard] = lease
        end
        local bought = num(redis.call('HGET', K.users, customer))
        if not lease or lease.f ~= fence or lease.o ~= owner or lease.e <= now or lease.r < quantity then
          results[i + 1] = {'FENCED'}
        elseif bought + quantity > meta.limit then
          results[i + 1] = {'LIMIT', bought}
        else
          lease.r = lease.r - quantity
          dirty[shard] = true
          delta = delta + quantity
          committed = committed + 1
          create_order(now, id, customer, quantity, key, delivery, shard, fence, owner, 'bucket', true)
          results[i + 1] = {'OK', now}
        end
      end
    end
    for shard in pairs(dirty) do
      redis.call('HSET', K.leases, shard, cjson.encode(leases[shard]))
    end
    if delta > 0 then
      redis.call('INCRBY', K.sold, delta)
      redis.call('HINCRBY', K.stats, 'orders', committed)
      log_stock(now, 'commit', -delta, 0, owner)
      local sold = num(redis.call('GET', K.sold))
      if sold > meta.stock then return redis.error_reply('INVARIANT sold=' .. sold .. ' > stock=' .. meta.stock) end
      if sold == meta.stock then close_sale(now, 'sold_out') end
    end
    return results
    """#)

    /// ARGV: orderId, customer ("" when an admin cancels). A compensating transaction: the units go to the
    /// waitlist head or the pool, the customer's count drops. Answers `{OK, recordJSON}`, `{NOT_FOUND}`
    /// or `{CLOSED, reason}`. Cancelling a cancelled (or failed) order answers OK with it, unchanged.
    public static let cancelOrder = RedisScript(name: "cancel_order", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local raw = redis.call('HGET', K.orders, ARGV[1])
    if not raw then return {'NOT_FOUND'} end
    local order = cjson.decode(raw)
    if ARGV[2] ~= '' and order.c ~= ARGV[2] then return {'NOT_FOUND'} end
    -- Only a confirmed order holds units: cancelling a cancelled or failed one changes nothing.
    if order.s ~= 'confirmed' then return {'OK', raw} end
    local now = now_ms()
    local gate = settle_lifecycle(now, meta)
    if gate and gate[1] == 'CLOSED' then return gate end
    order.s = 'cancelled'
    order.ct = now
    local encoded = release_order(order)
    -- The whole order travels with its cancellation: drained before its confirmation (two drainers),
    -- it still creates a complete document.
    redis.call('XADD', K.outbox, '*', 'type', 'cancel', 'orderId', order.id, 'customer', order.c,
      'quantity', order.q, 'at', now, 'status', 'cancelled', 'createdAt', order.t, 'delivery', order.d or '',
      'key', order.k or '', 'shard', order.sh or '', 'fence', order.f or 0, 'instance', order.i or '', 'source', order.src or '')
    log_stock(now, 'cancel', order.q, 0, '')
    if not gate then serve_waitlist(now, meta) end
    local broken = check_invariant(meta)
    if broken then return broken end
    return {'OK', encoded}
    """#)

    /// ARGV: orderId, reason. The compensating transaction for an order the order store refused for good:
    /// the order is marked `failed`, its units go back (waitlist head first, else the pool), the
    /// customer's count drops and the idempotency key is freed (the attempt bought nothing). Nothing goes
    /// to the outbox. Answers `{OK, recordJSON}`, `{UNCHANGED, recordJSON}` when the order is no longer
    /// confirmed, or `{NOT_FOUND}`.
    public static let failOrder = RedisScript(name: "fail_order", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local raw = redis.call('HGET', K.orders, ARGV[1])
    if not raw then return {'NOT_FOUND'} end
    local order = cjson.decode(raw)
    if order.s ~= 'confirmed' then return {'UNCHANGED', raw} end
    local now = now_ms()
    order.s = 'failed'
    order.ft = now
    order.fr = ARGV[2]
    local encoded = release_order(order)
    if order.k and order.k ~= '' then
      local field = idem_field(order.c, order.k)
      if redis.call('HGET', K.idem, field) == order.id then redis.call('HDEL', K.idem, field) end
    end
    log_stock(now, 'order_failed', order.q, 0, '')
    if meta.status ~= 'closed' and now >= meta.start and now < meta.finish then serve_waitlist(now, meta) end
    local broken = check_invariant(meta)
    if broken then return broken end
    return {'OK', encoded}
    """#)

    /// ARGV: force ("1" or "0"). First step of a ledger rebuild: refuses (`{LIVE, status}`) while the sale's
    /// meta exists unless forced; otherwise deletes every key of the sale (a half-finished earlier rebuild
    /// never wrote meta, so it is wiped too) and answers `{OK}`.
    public static let restoreBegin = RedisScript(name: "restore_begin", source: prelude + #"""
    if ARGV[1] ~= '1' and redis.call('EXISTS', K.meta) == 1 then
      return {'LIVE', redis.call('HGET', K.meta, 'status') or ''}
    end
    for _, key in ipairs(KEYS) do redis.call('DEL', key) end
    return {'OK'}
    """#)

    /// ARGV: n, then n × (orderId, customer, quantity, status, recordJSON, idempotencyKey). Restores a chunk
    /// of orders in their original order (callers send them sorted by outbox position); only confirmed
    /// orders count towards sold and the customer's total. Refuses once meta exists (the rebuild finished).
    public static let restoreOrders = RedisScript(name: "restore_orders", source: prelude + #"""
    if redis.call('EXISTS', K.meta) == 1 then return {'LIVE'} end
    local n = tonumber(ARGV[1])
    local confirmed, units = 0, 0
    for i = 0, n - 1 do
      local b = 1 + i * 6
      local id, customer, quantity, status, record, key = ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
      if redis.call('HSETNX', K.orders, id, record) == 1 then
        local mine = redis.call('HGET', K.customers, customer)
        redis.call('HSET', K.customers, customer, mine and (mine .. ' ' .. id) or id)
        if status == 'confirmed' then
          redis.call('HINCRBY', K.users, customer, quantity)
          redis.call('INCRBY', K.sold, quantity)
          confirmed, units = confirmed + 1, units + quantity
        elseif status == 'cancelled' or status == 'failed' then
          redis.call('HINCRBY', K.stats, status, 1)
        end
        -- A failed order freed its key; a cancelled one keeps it (as the live ledger does).
        if key ~= '' and status ~= 'failed' then redis.call('HSET', K.idem, idem_field(customer, key), id) end
      end
    end
    redis.call('HINCRBY', K.stats, 'orders', confirmed)
    return {'OK', confirmed, units}
    """#)

    /// ARGV: then the meta hash as field/value pairs (must include stock and status), fence. The last step
    /// of a rebuild: pool = stock - sold, the fence above every fence seen, meta written (the ledger is live
    /// again). Answers `{OK, pool, sold}` or an `INVARIANT` error when the orders exceed the stock.
    public static let restoreFinish = RedisScript(name: "restore_finish", source: prelude + #"""
    if redis.call('EXISTS', K.meta) == 1 then return {'LIVE'} end
    local sold = num(redis.call('GET', K.sold))
    local fields = {}
    for i = 2, #ARGV, 2 do fields[ARGV[i]] = ARGV[i + 1] end
    local stock = tonumber(fields.stock)
    if not stock or sold > stock then
      return redis.error_reply('INVARIANT restored sold=' .. sold .. ' exceeds stock=' .. tostring(fields.stock))
    end
    redis.call('SET', K.sold, sold)
    redis.call('SET', K.pool, stock - sold)
    redis.call('SET', K.fence, ARGV[1])
    for i = 2, #ARGV, 2 do redis.call('HSET', K.meta, ARGV[i], ARGV[i + 1]) end
    local now = now_ms()
    log_stock(now, 'rebuilt', stock - sold, tonumber(ARGV[1]), '')
    local meta = load_meta()
    local broken = check_invariant(meta)
    if broken then return broken end
    return {'OK', stock - sold, sold}
    """#)

    /// ARGV: customer, quantity, orderId, idempotencyKey, delivery, owner. Called when this instance has
    /// no unit and the ledger granted no lease. Answers `{WAITING, position}`, `{SERVED, recordJSON}`,
    /// `{DUP, recordJSON}`, `{RETRY}` (units are free: lease them), `{LIMIT, purchased}`,
    /// `{INSUFFICIENT, unsold}`, `{CLOSED, reason}`, `{NOT_STARTED, ms}` or `{NOT_FOUND}`.
    public static let joinWaitlist = RedisScript(name: "join_waitlist", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local customer, quantity, id, key = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
    if key ~= '' then
      local keyed = redis.call('HGET', K.idem, idem_field(customer, key))
      if keyed then return {'DUP', redis.call('HGET', K.orders, keyed)} end
    end
    local now = now_ms()
    local gate = settle(now, meta)
    if gate then return gate end
    if redis.call('HEXISTS', K.waiters, customer) == 1 then
      return {'WAITING', redis.call('ZRANK', K.waitlist, customer) + 1}
    end
    local bought = num(redis.call('HGET', K.users, customer))
    if bought + quantity > meta.limit then return {'LIMIT', bought} end
    local unsold = meta.stock - num(redis.call('GET', K.sold))
    if quantity > unsold then return {'INSUFFICIENT', unsold} end
    if num(redis.call('GET', K.pool)) >= quantity and redis.call('ZCARD', K.waitlist) == 0 then return {'RETRY'} end
    local sequence = redis.call('HINCRBY', K.stats, 'waitSequence', 1)
    redis.call('ZADD', K.waitlist, sequence, customer)
    redis.call('HSET', K.waiters, customer, cjson.encode({id = id, q = quantity, k = key, d = ARGV[5], i = ARGV[6], t = now}))
    redis.call('HINCRBY', K.stats, 'waitlistJoined', 1)
    serve_waitlist(now, meta)
    settle_lifecycle(now, meta)
    if redis.call('HEXISTS', K.waiters, customer) == 0 then
      local record = redis.call('HGET', K.orders, id)
      if record then return {'SERVED', record} end
      return {'INSUFFICIENT', meta.stock - num(redis.call('GET', K.sold))}
    end
    return {'WAITING', redis.call('ZRANK', K.waitlist, customer) + 1}
    """#)

    /// ARGV: mode: "auto" (close if the end passed or all is sold), "ended" or "sold_out" (force).
    /// Answers `{status, closedReason}`.
    public static let closeSale = RedisScript(name: "close_sale", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local now = now_ms()
    if meta.status ~= 'closed' then
      if ARGV[1] == 'auto' then
        if now >= meta.start then settle(now, meta) end
      else
        close_sale(now, ARGV[1])
        meta.status, meta.reason = 'closed', ARGV[1]
      end
    end
    local broken = check_invariant(meta)
    if broken then return broken end
    return {meta.status, meta.reason}
    """#)

    /// Read-only, atomic view of a sale: `{metaFlat, pool, sold, leasesFlat, waitlist, statsFlat, buyers, nowMs}`.
    public static let snapshot = RedisScript(name: "snapshot", source: prelude + #"""
    if redis.call('EXISTS', K.meta) == 0 then return {'NOT_FOUND'} end
    return {redis.call('HGETALL', K.meta), num(redis.call('GET', K.pool)), num(redis.call('GET', K.sold)),
      redis.call('HGETALL', K.leases), redis.call('ZCARD', K.waitlist), redis.call('HGETALL', K.stats),
      redis.call('HLEN', K.users), now_ms()}
    """#)

    /// ARGV: owner ("" for every instance). Revokes leases (rebalance, drain): their remaining units go to
    /// the pool (waitlist first); the owners' next commits on them are fenced. Answers `{revokedLeases, returnedUnits}`.
    public static let revokeLeases = RedisScript(name: "revoke_leases", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local now = now_ms()
    local all = redis.call('HGETALL', K.leases)
    local revoked, units = 0, 0
    for i = 1, #all, 2 do
      local lease = cjson.decode(all[i + 1])
      if ARGV[1] == '' or lease.o == ARGV[1] then
        redis.call('HDEL', K.leases, all[i])
        if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
        revoked, units = revoked + 1, units + lease.r
        log_stock(now, 'lease_revoked', lease.r, lease.f, lease.o)
      end
    end
    if meta.status ~= 'closed' and now >= meta.start then settle(now, meta) end
    local broken = check_invariant(meta)
    if broken then return broken end
    return {revoked, units}
    """#)

    /// The textbook flash-sale order path, for side-by-side comparison only: one script call per order
    /// straight against the pool (no leases, no group commit), with the same bookkeeping as a commit.
    /// ARGV: orderId, customer, quantity, idempotencyKey, delivery. Answers like one `commitBatch` element,
    /// plus `{SOLD_OUT}` and `{INSUFFICIENT, unsold}`.
    public static let directOrder = RedisScript(name: "direct_order", source: prelude + #"""
    local meta = load_meta()
    if not meta then return {'NOT_FOUND'} end
    local now = now_ms()
    local gate = settle_lifecycle(now, meta)
    if gate then return gate end
    local id, customer, quantity, key = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
    if key ~= '' then
      local keyed = redis.call('HGET', K.idem, idem_field(customer, key))
      if keyed then return {'DUP', redis.call('HGET', K.orders, keyed)} end
    end
    local bought = num(redis.call('HGET', K.users, customer))
    if bought + quantity > meta.limit then return {'LIMIT', bought} end
    local pool = num(redis.call('GET', K.pool))
    if pool < quantity then
      local unsold = meta.stock - num(redis.call('GET', K.sold))
      if unsold == 0 then return {'SOLD_OUT'} end
      return {'INSUFFICIENT', unsold}
    end
    redis.call('DECRBY', K.pool, quantity)
    redis.call('INCRBY', K.sold, quantity)
    create_order(now, id, customer, quantity, key, ARGV[5], '', 0, 'direct', 'direct')
    log_stock(now, 'direct', -quantity, 0, '')
    if num(redis.call('GET', K.sold)) == meta.stock then close_sale(now, 'sold_out') end
    return {'OK', now}
    """#)

    public static let all: [RedisScript] = [
        createSale, acquireLease, renewLeases, returnLease, commitBatch, cancelOrder, joinWaitlist, closeSale, snapshot,
        failOrder, restoreBegin, restoreOrders, restoreFinish,
        revokeLeases, directOrder,
    ]
}
