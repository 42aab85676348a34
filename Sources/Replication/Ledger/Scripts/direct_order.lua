-- The textbook flash-sale order path, for side-by-side comparison only: one script call per order
-- straight against the pool (no leases, no group commit), with the same bookkeeping as a commit.
-- ARGV: orderId, customer, quantity, idempotencyKey, delivery. Answers like one `commitBatch` element,
-- plus `{SOLD_OUT}`, `{INSUFFICIENT, unsold}` and `{WAITING, position}` (the key names a waitlist entry).
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local now = now_ms()
local gate = settle_lifecycle(now, meta)
if gate then return gate end
local id, customer, quantity, key = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local entry = redis.call('HGET', K.users, customer)
local claim = key_claim(customer, key, entry)
if claim then return claim end
local bought = read_entry(entry)
if bought + quantity > meta.limit then return {'LIMIT', bought} end
local pool = num(redis.call('GET', K.pool))
if pool < quantity then
  local unsold = meta.stock - num(redis.call('GET', K.sold))
  if unsold == 0 then return {'SOLD_OUT'} end
  return {'INSUFFICIENT', unsold}
end
redis.call('DECRBY', K.pool, quantity)
redis.call('INCRBY', K.sold, quantity)
create_order(now, id, customer, quantity, key, ARGV[5], '', 0, 'direct', 'direct', entry)
log_stock(now, 'direct', -quantity, 0, '')
if num(redis.call('GET', K.sold)) == meta.stock then close_sale(now, 'sold_out') end
return {'OK', now}
