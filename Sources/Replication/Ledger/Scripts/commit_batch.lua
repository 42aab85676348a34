-- ARGV: owner, count, plain ("1" when the caller checked that owner and every order's id, shard, customer,
-- key and delivery are printable ASCII without `"`, `\` or `/`: see order_record_json; else "0"), replay
-- ("1" when the batch may have been applied already: the same batch sent again after an unknown outcome; its
-- order ids are then looked up, and an order already in the ledger answers DUP. A first attempt's ids are new
-- by construction, 96 random bits each (OrderID.swift), so it skips that read), then `count` groups of 7: orderId, shardId, fence, customer, quantity, idempotencyKey ("" for none), delivery. Answers one element per order, in order:
-- `createdAtMs` (an integer: committed; no table per order on the common path), `{DUP, orderRecordJSON}` (already in the ledger: this order replayed, or the
-- customer's idempotency key), `{WAITING, position}` (the key names the customer's waitlist entry),
-- `{LIMIT, purchased}`, `{FENCED}` or `{CLOSED, reason}`.
--
-- FENCED: the lease is gone (reclaimed, returned or revoked), carries another fence or owner, or has fewer
-- units left. A lease past its expiry that nothing reclaimed yet still holds its units, so its orders commit:
-- they were taken from the instance's bucket before its local deadline, which comes earlier, and only their
-- commit is late (a write pause while the primary role is handed over can outlast a renewal's slack). The
-- first script that settles the sale reclaims it; from then on its late commits are FENCED.
--
-- Batch-level work: the batch's customers are read with one HMGET (a customer's entry in `users` holds their
-- units, the ids of the orders holding them and those orders' key claims: see read_entry), its order ids only
-- on a replay, and key claims in `idem` only while `idem` holds any (waitlist entries, released orders, orders
-- of the waitlist, the direct path, a restore or an earlier version). Its confirmed orders are written with
-- one multi-field HSET per hash, ONE commit-log entry (`ids`: the batch's order ids, each after the one before
-- and a space; the drainer reads their records from `orders`, so a record's bytes are written once, not again
-- into a stream and the AOF) and one stock-log entry.
-- Decisions within the batch see each other through the local tables (`created`, `claimedNow`, `bought`).
local meta = load_meta()
local count = tonumber(ARGV[2])
if not count or #ARGV ~= 4 + 7 * count then
  return redis.error_reply('BADARG ' .. #ARGV .. ' arguments for ' .. tostring(ARGV[2]) .. ' orders')
end
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
local plain = ARGV[3] == '1'
local replay = ARGV[4] == '1'
local nowText = string.format('%d', now)

-- Claims in `idem` are read only while it holds any: on the common path every key's claim is in its
-- customer's entry, read anyway.
local claimsInIdem = redis.call('HLEN', K.idem) > 0
local argv, find = ARGV, string.find  -- locals: read once per field of every order
local ids, customers, keyed, keyedAt = {}, {}, {}, {}
for i = 1, count do
  local b = 5 + (i - 1) * 7
  local id = argv[b]
  ids[i], customers[i] = id, argv[b + 3]
  -- an order id is written into its customer's `users` entry after a space (read_entry)
  if find(id, ' ', 1, true) then return redis.error_reply('BADARG order id with a space') end
  if claimsInIdem and argv[b + 5] ~= '' then
    keyed[#keyed + 1] = idem_field(argv[b + 3], argv[b + 5])
    keyedAt[i] = #keyed
  end
end
local existing = replay and read_in_chunks(K.orders, ids) or {}
local idemClaims = claimsInIdem and read_in_chunks(K.idem, keyed) or {}
local purchased = read_in_chunks(K.users, customers)

local leases, dirty = {}, {}
local bought = {}            -- customer -> units bought, including this batch's orders so far
local held = {}              -- customer -> ids of the orders holding those units (see read_entry)
local claimsOf = {}          -- customer -> the claims part of their entry, with this batch's claims
local buyers = {}            -- customers with an order confirmed in this batch
local created = {}           -- orderId -> record JSON, for this batch's orders
-- Keys claimed by this batch: in `claimsOf` (its entry's claims part grows with them), and here those that
-- cannot sit in an entry (entry_key), by idem_field.
local claimedNow = {}
local orderWrites, idemWrites, committedIds = {}, {}, {}
local orderCount, idemCount = 0, 0
local delta, committed = 0, 0
-- quantity and fence texts already checked, with their numbers (a batch repeats a few of each), and per
-- lease the end of its orders' records (shard, fence, instance, source: the same for all of them)
local quantities, fences, tails, tailFences = {}, {}, {}, {}
for i = 1, count do
  local b = 5 + (i - 1) * 7
  local id, shard, customer = ids[i], argv[b + 1], customers[i]
  local key, delivery = argv[b + 5], argv[b + 6]
  -- quantity and fence are written into the record as given: they must be plain decimal integers
  local quantityText, fenceText = argv[b + 4], argv[b + 2]
  local quantity, fence = quantities[quantityText], fences[fenceText]
  if not quantity then
    if not find(quantityText, '^[1-9]%d*$') then return redis.error_reply('BADARG quantity ' .. quantityText) end
    quantity = tonumber(quantityText)
    quantities[quantityText] = quantity
  end
  if not fence then
    if not find(fenceText, '^%d+$') then return redis.error_reply('BADARG fence ' .. fenceText) end
    fence = tonumber(fenceText)
    fences[fenceText] = fence
  end
  local already = bought[customer]
  if not already then
    bought[customer], held[customer], claimsOf[customer] = read_entry(purchased[i])
    already = bought[customer]
  end
  local record = existing[i] or created[id]
  local claim = nil
  if not record and key ~= '' then
    -- the customer's entry, with this batch's claims; then those of keys kept out of entries; then `idem`
    local claimed = entry_claim(claimsOf[customer], key) or (idemWrites[1] and claimedNow[idem_field(customer, key)])
    local claimedRecord = claimed and (created[claimed] or redis.call('HGET', K.orders, claimed))
    if claimedRecord then
      claim = {'DUP', claimedRecord}
    elseif keyedAt[i] and idemClaims[keyedAt[i]] then
      claim = idem_claim(customer, key)
    end
  end
  if record then
    results[i] = {'DUP', record}
  elseif claim then
    results[i] = claim
  elseif closed then
    results[i] = {'CLOSED', closed}
  else
    local lease = leases[shard]
    if lease == nil then
      local raw = redis.call('HGET', K.leases, shard)
      lease = raw and cjson.decode(raw) or false
      leases[shard] = lease
    end
    if not lease or lease.f ~= fence or lease.o ~= owner or lease.r < quantity then
      results[i] = {'FENCED'}
    elseif already + quantity > meta.limit then
      results[i] = {'LIMIT', already}
    else
      lease.r = lease.r - quantity
      dirty[shard] = true
      delta = delta + quantity
      committed = committed + 1
      bought[customer] = already + quantity
      held[customer] = held[customer] .. ' ' .. id
      buyers[customer] = true
      local encoded
      if plain then
        local tail = tails[shard]
        if tailFences[shard] ~= fenceText then
          tail = order_record_tail(shard, fenceText, owner, 'bucket')
          tails[shard], tailFences[shard] = tail, fenceText
        end
        encoded = '{"id":"' .. id .. '","c":"' .. customer .. '","q":' .. quantityText .. ',"t":' .. nowText ..
          ',"s":"confirmed","k":"' .. key .. '","d":"' .. delivery .. tail
      else
        encoded = order_record_json(id, customer, quantityText, nowText, key, delivery, shard, fenceText, owner, 'bucket', false)
      end
      created[id] = encoded
      committedIds[committed] = id
      orderWrites[orderCount + 1] = id
      orderWrites[orderCount + 2] = encoded
      orderCount = orderCount + 2
      if key ~= '' then
        if entry_key(key) then
          claimsOf[customer] = claimsOf[customer] .. '\n' .. key .. '\r' .. id
        else
          local field = idem_field(customer, key)
          claimedNow[field] = id
          idemWrites[idemCount + 1] = field
          idemWrites[idemCount + 2] = id
          idemCount = idemCount + 2
        end
      end
      results[i] = now
    end
  end
end
for shard in pairs(dirty) do
  redis.call('HSET', K.leases, shard, cjson.encode(leases[shard]))
end
if delta > 0 then
  local userWrites = {}
  for customer in pairs(buyers) do
    userWrites[#userWrites + 1] = customer
    userWrites[#userWrites + 1] = units_text(bought[customer]) .. held[customer] .. claimsOf[customer]
  end
  -- Every committed order is a new field. An id already in `orders` would be a reused id (a replay looks its
  -- ids up; a first attempt's are new by construction): the HSET's count shows it, and it is logged and
  -- counted (`stats.reusedOrderIds`) rather than failed, since the batch's other writes would be made already.
  local added = call_in_chunks('HSET', K.orders, orderWrites)
  if added ~= committed then
    redis.log(redis.LOG_WARNING, 'commit_batch: ' .. (committed - added) .. ' order ids were already in ' .. K.orders)
    redis.call('HINCRBY', K.stats, 'reusedOrderIds', committed - added)
  end
  call_in_chunks('HSET', K.idem, idemWrites)
  call_in_chunks('HSET', K.users, userWrites)
  redis.call('XADD', K.commits, '*', 'at', now, 'instance', owner, 'ids', table.concat(committedIds, ' '))
  local sold = redis.call('INCRBY', K.sold, delta)
  redis.call('HINCRBY', K.stats, 'orders', committed)
  log_stock(now, 'commit', -delta, 0, owner, sold)
  if sold > meta.stock then return redis.error_reply('INVARIANT sold=' .. sold .. ' > stock=' .. meta.stock) end
  if sold == meta.stock then close_sale(now, 'sold_out') end
end
return results
