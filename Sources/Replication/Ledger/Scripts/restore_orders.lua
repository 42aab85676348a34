-- ARGV: n, then n × (orderId, customer, quantity, status, recordJSON, idempotencyKey). Restores a chunk
-- of orders in their original order (callers send them sorted by outbox position); only confirmed
-- orders count towards sold and the customer's total. Refuses once meta exists (the rebuild finished).
if redis.call('EXISTS', K.meta) == 1 then return {'LIVE'} end
local n = tonumber(ARGV[1])
local confirmed, units = 0, 0
for i = 0, n - 1 do
  local b = 1 + i * 6
  local id, customer, quantity, status, record, key = ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  if redis.call('HSETNX', K.orders, id, record) == 1 then
    local inEntry = false
    if status == 'confirmed' then
      -- as a commit batch writes it: the key's claim in the customer's entry
      inEntry = add_to_entry(customer, redis.call('HGET', K.users, customer), quantity, id, key)
      redis.call('INCRBY', K.sold, quantity)
      confirmed, units = confirmed + 1, units + quantity
    elseif status == 'cancelled' or status == 'failed' then
      redis.call('ZADD', K.customers, 0, past_member(customer, tonumber(cjson.decode(record).t) or 0, id))
      redis.call('HINCRBY', K.stats, status, 1)
    end
    -- A failed order freed its key; a cancelled one keeps it (as the live ledger does).
    if key ~= '' and status ~= 'failed' and not inEntry then redis.call('HSET', K.idem, idem_field(customer, key), id) end
  end
end
redis.call('HINCRBY', K.stats, 'orders', confirmed)
return {'OK', confirmed, units}
