-- ARGV: orderId, customer ("" when an admin cancels). A compensating transaction: the units go to the
-- waitlist head or the pool, the customer's count drops. Answers `{OK, recordJSON}`, `{NOT_FOUND}`
-- or `{CLOSED, reason}`. Cancelling a cancelled (or failed) order answers OK with it, unchanged.
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
