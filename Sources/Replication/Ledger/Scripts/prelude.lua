-- Shared by every ledger script (prepended to each): the KEYS table, time, the invariant,
-- and the helpers that move units. See LedgerScripts.swift for the key order and record formats.
local K = {meta = KEYS[1], pool = KEYS[2], sold = KEYS[3], fence = KEYS[4], leases = KEYS[5],
  users = KEYS[6], idem = KEYS[7], orders = KEYS[8], outbox = KEYS[9], stocklog = KEYS[10],
  waitlist = KEYS[11], waiters = KEYS[12], stats = KEYS[13], customers = KEYS[14], served = KEYS[15], commits = KEYS[16]}
local MAX_SETTLE = 1000

local function num(value) return tonumber(value) or 0 end

-- Lua's unpack has a C-stack bound (8,000 values here): multi-field reads and writes go in chunks of
-- CHUNK values, pairs kept together.
local CHUNK = 1000

-- HMGET of `fields` (any count, none allowed): the values in the same order, false where absent.
local function read_in_chunks(key, fields)
  local values = {}
  for first = 1, #fields, CHUNK do
    local last = math.min(first + CHUNK - 1, #fields)
    local part = redis.call('HMGET', key, unpack(fields, first, last))
    for j = 1, #part do values[first + j - 1] = part[j] end
  end
  return values
end

-- `command key a1 b1 a2 b2 ...` for pairs (HSET field value, ZADD score member), none allowed. Answers the
-- sum of the replies (HSET and ZADD: the fields or members added).
local function call_in_chunks(command, key, pairs_list)
  assert(#pairs_list % 2 == 0, 'call_in_chunks takes pairs')
  local total = 0
  for first = 1, #pairs_list, CHUNK do
    total = total + redis.call(command, key, unpack(pairs_list, first, math.min(first + CHUNK - 1, #pairs_list)))
  end
  return total
end

-- The ledger's clock: Redis `TIME`, in microseconds (exact in a Lua number) and in milliseconds.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms()
  return math.floor(now_us() / 1000)
end

local function load_meta()
  local m = redis.call('HMGET', K.meta, 'stock', 'startMs', 'endMs', 'limit', 'status', 'closedReason')
  if not m[1] then return nil end
  return {stock = tonumber(m[1]), start = tonumber(m[2]), finish = tonumber(m[3]),
    limit = tonumber(m[4]), status = m[5], reason = m[6] or ''}
end

-- The decimal text of a small non-negative integer (a string's length, a customer's units), formatted once per
-- number (Lua formats a number concatenated to a string with sprintf "%.14g"; two per order showed in a
-- profile of the batch commit). Bounded: only numbers below DECIMAL_CACHED are kept.
local DECIMAL_TEXT, DECIMAL_CACHED = {}, 4096
local function decimal_text(n)
  local text = DECIMAL_TEXT[n]
  if not text then
    text = string.format('%d', n)
    if n >= 0 and n < DECIMAL_CACHED then DECIMAL_TEXT[n] = text end
  end
  return text
end

-- The decimal text of a string's length.
local function length_text(s)
  return decimal_text(#s)
end

local function idem_field(customer, key)
  return length_text(customer) .. ':' .. customer .. key
end

-- A customer's entry in `users`: the units their confirmed orders hold, then the id of each of those
-- orders after a space, `<units> <orderId> <orderId>...` (order ids never contain a space; an entry
-- without ids, `<units>`, reads the same), then the claims of the Idempotency-Keys those orders were placed
-- under, `\n<key>\r<orderId>` each (a key is an HTTP header value: it never holds CR or LF; a key that does is
-- claimed in `idem` instead). Bounded by the per-customer limit; `/me` reads a customer's orders that hold
-- units from it, and the commit script keeps it, and so the customer's key claims, with the same HMGET and HSET
-- that keep the count (a sorted-set index beside the count cost 15-22% of the commit's Redis time, and a claim
-- in `idem` per keyed order 13%, commit_cost.py). Claims of orders written by the waitlist, the direct path,
-- a restore or an earlier version, of released orders and of waitlist entries are in `idem` (see key_claim).
-- Answers the units, the ids part (each id after a space) and the claims part (each claim after a LF); 0, '', ''
-- for no entry.
local function read_entry(entry)
  if not entry then return 0, '', '' end
  local claims = ''
  local newline = string.find(entry, '\n', 1, true)
  if newline then
    claims = string.sub(entry, newline)
    entry = string.sub(entry, 1, newline - 1)
  end
  local space = string.find(entry, ' ', 1, true)
  if not space then return tonumber(entry) or 0, '', claims end
  return tonumber(string.sub(entry, 1, space - 1)) or 0, string.sub(entry, space), claims
end

-- Whether a key can be claimed in an entry (no CR or LF in it).
local function entry_key(key)
  return not string.find(key, '[\r\n]')
end

-- The order id an entry's claims part gives `key`, or nil.
local function entry_claim(claims, key)
  -- a key with a line break is never in an entry (and could match across two claims)
  if claims == '' or key == '' or not entry_key(key) then return nil end
  local at = string.find(claims, '\n' .. key .. '\r', 1, true)
  if not at then return nil end
  local first = at + #key + 2
  local stop = string.find(claims, '\n', first, true)
  return string.sub(claims, first, (stop or 0) - 1)
end

-- Writes a customer's entry; none once they hold no unit (then they hold no order, and no claim, either).
local function write_entry(customer, units, held, claims)
  claims = claims or ''
  if units <= 0 then
    assert(held == '' and claims == '', 'a customer without units holds no order and no claim')
    redis.call('HDEL', K.users, customer)
  else
    redis.call('HSET', K.users, customer, string.format('%d', units) .. held .. claims)
  end
end

-- Adds a confirmed order to a customer's entry (`entry` as read by the caller). With `key` (not ''), the key's
-- claim goes into the entry too when it can (entry_key); answers whether it did (else the caller claims the
-- key in `idem`).
local function add_to_entry(customer, entry, quantity, id, key)
  local units, held, claims = read_entry(entry)
  local claimed = key ~= nil and key ~= '' and entry_key(key)
  if claimed then claims = claims .. '\n' .. key .. '\r' .. id end
  write_entry(customer, units + quantity, held .. ' ' .. id, claims)
  return claimed
end

-- The index of past orders (`customers`, a sorted set read by lexicographic range): one member per
-- cancelled or failed order, `<len>:<customer>|x|<createdAtMs, 15 digits>|<orderId>`; `/me` reads a
-- customer's newest ones. Written only when an order is released, so never on the order path.
local function past_member(customer, created, id)
  return length_text(customer) .. ':' .. customer .. '|x|' .. string.format('%015d', created) .. '|' .. id
end

-- The end of a plain record (see order_record_json) from the delivery's closing quote on: the same for every order of a
-- lease, so commit_batch.lua writes it once per lease.
local function order_record_tail(shard, fenceText, instance, source)
  return '","sh":"' .. shard .. '","f":' .. fenceText .. ',"i":"' .. instance .. '","src":"' .. source .. '"}'
end

-- A confirmed order's record (OrderRecord in Swift), written out: only the strings go through the JSON
-- escaper, and the integers arrive as decimal text (a batch formats its time once; quantity and fence are
-- ARGV's own text, checked by the caller), so no Lua number is formatted per order. With `plain`, the
-- caller vouches that every string is printable ASCII without `"`, `\` or `/` (bytes 0x20-0x7E but those
-- three), which JSON and cjson write as they are: the strings are then quoted without the escaper (about
-- 3 us of Redis time per order, scripts/commit_cost.py; the output is byte for byte what cjson writes).
local function order_record_json(id, customer, quantityText, createdText, key, delivery, shard, fenceText, instance, source, plain)
  if plain then
    return '{"id":"' .. id .. '","c":"' .. customer .. '","q":' .. quantityText .. ',"t":' .. createdText ..
      ',"s":"confirmed","k":"' .. key .. '","d":"' .. delivery .. order_record_tail(shard, fenceText, instance, source)
  end
  return '{"id":' .. cjson.encode(id) .. ',"c":' .. cjson.encode(customer) .. ',"q":' .. quantityText ..
    ',"t":' .. createdText .. ',"s":"confirmed","k":' .. cjson.encode(key) .. ',"d":' .. cjson.encode(delivery) ..
    ',"sh":' .. cjson.encode(shard) .. ',"f":' .. fenceText .. ',"i":' .. cjson.encode(instance) ..
    ',"src":' .. cjson.encode(source) .. '}'
end

-- What a customer's idempotency key stands for by its claim in `idem` (see key_claim).
local function idem_claim(customer, key)
  local field = idem_field(customer, key)
  local claimed = redis.call('HGET', K.idem, field)
  if not claimed then return nil end
  local record = redis.call('HGET', K.orders, claimed)
  if record then return {'DUP', record} end
  local waiter = redis.call('HGET', K.waiters, customer)
  if waiter and cjson.decode(waiter).id == claimed then
    return {'WAITING', redis.call('ZRANK', K.waitlist, customer) + 1}
  end
  redis.call('HDEL', K.idem, field)
  return nil
end

-- What a customer's idempotency key already stands for: `{DUP, record}` when it names an order,
-- `{WAITING, position}` when it names the customer's waitlist entry (a key is claimed by whichever comes
-- first, order or waitlist entry), nil when the key is free. The claim is in the customer's entry (an order
-- holding units, committed in a batch) or in `idem` (the others, see read_entry). A claim left by an entry that
-- is no longer waiting (cannot happen: unserved entries free their key) is freed rather than trusted.
-- `entry`: the customer's `users` entry when the caller read it already.
local function key_claim(customer, key, entry)
  if key == '' then return nil end
  if entry == nil then entry = redis.call('HGET', K.users, customer) end
  local _, _, claims = read_entry(entry)
  local claimed = entry_claim(claims, key)
  if claimed then
    local record = redis.call('HGET', K.orders, claimed)
    if record then return {'DUP', record} end
  end
  return idem_claim(customer, key)
end

-- Frees a waitlist entry's key claim (the entry leaves unserved: its attempt bought nothing).
local function release_claim(customer, waiter)
  if not waiter.k or waiter.k == '' then return end
  local field = idem_field(customer, waiter.k)
  if redis.call('HGET', K.idem, field) == waiter.id then redis.call('HDEL', K.idem, field) end
end

-- `sold`: the sold count when the caller has it (INCRBY's answer), else read here.
local function log_stock(now, reason, delta, fence, instance, sold)
  redis.call('XADD', K.stocklog, '*', 'at', now, 'reason', reason, 'delta', delta,
    'sold', sold or redis.call('GET', K.sold) or '0', 'pool', redis.call('GET', K.pool) or '0',
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

-- Instances present in a sale: each one's renew tick (every reconcile interval, leases or not) and lease
-- request leave `seen:<owner>` = ledger ms in `stats`. A lease is sized by the instances present within
-- `window` ms, not only by those holding a lease, so the first instance to ask at the opening does not take
-- the share of those about to ask. Entries older than 10 windows are dropped here (bounded by the fleet).
local function note_presence(now, owner)
  redis.call('HSET', K.stats, 'seen:' .. owner, now)
end

-- Arrival order across instances: an instance whose customers wait for a lease leaves the arrival time
-- (microseconds, its own clock) of the first customer its last grant did not cover as `head:<owner>` =
-- `<arrivalUs>:<ledger ms>` in `stats`. A head not refreshed within HEAD_FRESH_MS is ignored (its instance
-- stopped asking, or died) and dropped by the next lease request that sees it.
local HEAD_FRESH_MS = 500

local function set_head(owner, arrival, now)
  if arrival then
    redis.call('HSET', K.stats, 'head:' .. owner, string.format('%.0f:%d', arrival, now))
  else
    redis.call('HDEL', K.stats, 'head:' .. owner)
  end
end

-- The earliest fresh head of another instance: its arrival and owner, or nil. `stats` is HGETALL of K.stats.
local function earliest_other_head(stats, now, owner)
  local best, best_owner
  for i = 1, #stats, 2 do
    local name = stats[i]
    if string.sub(name, 1, 5) == 'head:' and string.sub(name, 6) ~= owner then
      local arrival, seen = string.match(stats[i + 1], '^(%d+):(%d+)$')
      arrival, seen = tonumber(arrival), tonumber(seen)
      if not arrival or now - seen > HEAD_FRESH_MS then
        redis.call('HDEL', K.stats, name)
      elseif not best or arrival < best or (arrival == best and string.sub(name, 6) < best_owner) then
        best, best_owner = arrival, string.sub(name, 6)
      end
    end
  end
  return best, best_owner
end

-- `stats` is HGETALL of K.stats (read once by the caller for this and earliest_other_head).
local function present_instances(stats, now, window, owners, count)
  for i = 1, #stats, 2 do
    local name = stats[i]
    if string.sub(name, 1, 5) == 'seen:' then
      local owner, age = string.sub(name, 6), now - (tonumber(stats[i + 1]) or 0)
      if age > 10 * window then
        redis.call('HDEL', K.stats, name)
      elseif age <= window and not owners[owner] then
        owners[owner] = true
        count = count + 1
      end
    end
  end
  return count
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

-- Writes one confirmed order; `entry` is the customer's `users` entry as read by the caller.
local function create_order(now, id, customer, quantity, key, delivery, shard, fence, instance, source, entry)
  redis.call('HSET', K.orders, id, order_record_json(id, customer, string.format('%d', quantity), string.format('%d', now),
    key, delivery, shard, string.format('%d', fence), instance, source))
  if key ~= '' then redis.call('HSET', K.idem, idem_field(customer, key), id) end
  add_to_entry(customer, entry, quantity, id)
  redis.call('HINCRBY', K.stats, 'orders', 1)
  redis.call('XADD', K.outbox, '*', 'type', 'order', 'orderId', id, 'customer', customer,
    'quantity', quantity, 'at', now, 'status', 'confirmed', 'delivery', delivery, 'key', key,
    'shard', shard, 'fence', fence, 'instance', instance, 'source', source)
end

-- Takes a confirmed order out of the counts (cancellation, or the order store refusing it): its units
-- go back to the pool and the customer's count drops. The caller has set the order's new status.
-- Everything is checked before the first write (a script's error does not undo the writes before it).
local function release_order(order)
  local units, held, claims = read_entry(redis.call('HGET', K.users, order.c))
  local at = string.find(held .. ' ', ' ' .. order.id .. ' ', 1, true)
  if at then
    held = string.sub(held, 1, at - 1) .. string.sub(held, at + #order.id + 1)
  else
    -- only an entry written by a version that kept the count alone lacks the order
    assert(held == '', 'a confirmed order is in its customer\'s entry')
  end
  -- Its key's claim leaves the entry for `idem`: a released order keeps its key (fail_order then frees it).
  local moved = nil
  if order.k and order.k ~= '' then
    local line = '\n' .. order.k .. '\r' .. order.id
    local from = string.find(claims .. '\n', line .. '\n', 1, true)
    if from then
      claims = string.sub(claims, 1, from - 1) .. string.sub(claims, from + #line)
      moved = idem_field(order.c, order.k)
    end
  end
  units = units - order.q
  assert(units > 0 or (held == '' and claims == ''), 'a customer without units holds no order and no claim')
  if moved then redis.call('HSET', K.idem, moved, order.id) end
  local encoded = cjson.encode(order)
  redis.call('HSET', K.orders, order.id, encoded)
  redis.call('ZADD', K.customers, 0, past_member(order.c, order.t, order.id))
  redis.call('DECRBY', K.sold, order.q)
  redis.call('INCRBY', K.pool, order.q)
  write_entry(order.c, units, held, claims)
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
    local waiters = redis.call('HGETALL', K.waiters)
    for i = 1, #waiters, 2 do release_claim(waiters[i], cjson.decode(waiters[i + 1])) end
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
    local entry = redis.call('HGET', K.users, customer)
    local bought = read_entry(entry)
    if bought + waiter.q > meta.limit or waiter.q > meta.stock - sold then
      redis.call('HINCRBY', K.stats, 'waitlistUnserved', 1)
      release_claim(customer, waiter)
    elseif waiter.q <= pool then
      redis.call('DECRBY', K.pool, waiter.q)
      redis.call('INCRBY', K.sold, waiter.q)
      create_order(now, waiter.id, customer, waiter.q, waiter.k, waiter.d, '', 0, waiter.i, 'waitlist', entry)
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
