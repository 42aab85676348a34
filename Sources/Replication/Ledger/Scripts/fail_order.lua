-- ARGV: orderId, reason. The compensating transaction for an order the order store refused for good:
-- the order is marked `failed`, its units go back (waitlist head first, else the pool), the
-- customer's count drops and the idempotency key is freed (the attempt bought nothing). Nothing goes
-- to the outbox. After the sale closed, the units go to the pool of the closed sale, and a sale that had
-- closed as sold out is not sold out any more: its reason becomes `ended`, and a stored summary is computed
-- again and stored in this same step (the drainer then writes the sale document with it). On a retired sale,
-- keys this writes for the first time get the retention TTL. KEYS: `LedgerKeys.retained`.
-- Answers `{OK, recordJSON, closedBefore}` (closedBefore "1" when the sale was already closed),
-- `{UNCHANGED, recordJSON}` when the order is no longer confirmed, or `{NOT_FOUND}`.
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
local closed = meta.status == 'closed'
if closed then
  if meta.reason == 'sold_out' then redis.call('HSET', K.meta, 'closedReason', 'ended') end
  redis.call('HINCRBY', K.meta, 'failedAfterClose', 1)
elseif now >= meta.start and now < meta.finish then
  serve_waitlist(now, meta)
end
local broken = check_invariant(meta)
if broken then return broken end
if closed and redis.call('EXISTS', K.summary) == 1 then
  redis.call('SET', K.summary, summary_json(), 'KEEPTTL')
end
keep_retention()
return {'OK', encoded, closed and '1' or '0'}
