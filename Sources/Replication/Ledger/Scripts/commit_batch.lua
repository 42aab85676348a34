-- ARGV: owner, count, then `count` groups of 7: orderId, shardId, fence, customer, quantity,
-- idempotencyKey ("" for none), delivery. Answers one element per order, in order:
-- `{OK, createdAtMs}`, `{DUP, orderRecordJSON}` (already in the ledger: this order replayed, or the
-- customer's idempotency key), `{WAITING, position}` (the key names the customer's waitlist entry),
-- `{LIMIT, purchased}`, `{FENCED}` or `{CLOSED, reason}`.
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
  local claim = (not existing) and key_claim(customer, key)
  if existing then
    results[i + 1] = {'DUP', existing}
  elseif claim then
    results[i + 1] = claim
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
