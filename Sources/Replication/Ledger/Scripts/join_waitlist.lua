-- ARGV: customer, quantity, orderId, idempotencyKey, delivery, owner. Called when this instance has
-- no unit and the ledger granted no lease. Answers `{WAITING, position}`, `{SERVED, recordJSON}`,
-- `{DUP, recordJSON}` (the key names an order), `{RETRY}` (units are free: lease them), `{LIMIT, purchased}`,
-- `{INSUFFICIENT, unsold}`, `{CLOSED, reason}`, `{NOT_STARTED, ms}` or `{NOT_FOUND}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local customer, quantity, id, key = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local claim = key_claim(customer, key)
if claim then return claim end
local now = now_ms()
local gate = settle(now, meta)
if gate then return gate end
local waiting = redis.call('HGET', K.waiters, customer)
if waiting then
  -- Another attempt of a customer already waiting (another key, or none): it is that entry. Its key now names the
  -- entry too, so a retry under it answers the entry's outcome (its place, then its order) and never a second order.
  if key ~= '' then redis.call('HSET', K.idem, idem_field(customer, key), cjson.decode(waiting).id) end
  return {'WAITING', redis.call('ZRANK', K.waitlist, customer) + 1}
end
-- read again, not the entry key_claim read: settle may have served this customer's earlier waitlist entry
local bought = read_entry(redis.call('HGET', K.users, customer))
if bought + quantity > meta.limit then return {'LIMIT', bought} end
local unsold = meta.stock - num(redis.call('GET', K.sold))
if quantity > unsold then return {'INSUFFICIENT', unsold} end
if num(redis.call('GET', K.pool)) >= quantity and redis.call('ZCARD', K.waitlist) == 0 then return {'RETRY'} end
local sequence = redis.call('HINCRBY', K.stats, 'waitSequence', 1)
redis.call('ZADD', K.waitlist, sequence, customer)
redis.call('HSET', K.waiters, customer, cjson.encode({id = id, q = quantity, k = key, d = ARGV[5], i = ARGV[6], t = now}))
if key ~= '' then redis.call('HSET', K.idem, idem_field(customer, key), id) end
redis.call('HINCRBY', K.stats, 'waitlistJoined', 1)
serve_waitlist(now, meta)
settle_lifecycle(now, meta)
if redis.call('HEXISTS', K.waiters, customer) == 0 then
  local record = redis.call('HGET', K.orders, id)
  if record then return {'SERVED', record} end
  return {'INSUFFICIENT', meta.stock - num(redis.call('GET', K.sold))}
end
return {'WAITING', redis.call('ZRANK', K.waitlist, customer) + 1}
