-- ARGV: owner, count, plain ("1" when the caller checked that owner and every order's id, shard, customer,
-- key and delivery are printable ASCII without `"`, `\` or `/`: see order_record_json; else "0"), replay
-- ("1" when the batch may have been applied already: the same batch sent again after an unknown outcome; its
-- order ids are then looked up, and an order already in the ledger answers DUP. A first attempt's ids are new
-- by construction, 96 random bits each (OrderID.swift), so it skips that read), leases (how many distinct
-- leases the batch's orders were taken from), then `leases` pairs shardId, fence, then `count` groups of 6:
-- orderId, lease (the 1-based index of its lease's pair, in decimal), customer, quantity, idempotencyKey ("" for
-- none), delivery. A lease's shard and fence are sent once per batch, not once per order: fewer strings for Lua
-- to intern and check. Answers one element per order, in order:
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
local count, leaseCount = tonumber(ARGV[2]), tonumber(ARGV[5])
if not count or not leaseCount or leaseCount < 1 or #ARGV ~= 5 + 2 * leaseCount + 6 * count then
  return redis.error_reply('BADARG ' .. #ARGV .. ' arguments for ' .. tostring(ARGV[2]) .. ' orders and ' ..
    tostring(ARGV[5]) .. ' leases')
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
-- The batch's leases, by index: shard, fence (its text is written into the records as given: a plain decimal
-- integer) and, once one of its orders commits, the end of their records (order_record_tail).
local leaseIndex, leaseShards, leaseFences, leaseFenceTexts, tails = {}, {}, {}, {}, {}
for j = 1, leaseCount do
  local fenceText = argv[5 + 2 * j]
  if not find(fenceText, '^%d+$') then return redis.error_reply('BADARG fence ' .. fenceText) end
  leaseIndex[decimal_text(j)] = j
  leaseShards[j], leaseFences[j], leaseFenceTexts[j] = argv[4 + 2 * j], tonumber(fenceText), fenceText
end
local base = 6 + 2 * leaseCount  -- the first order's first argument
local ids, customers, leaseOf, keyed, keyedAt = {}, {}, {}, {}, {}
for i = 1, count do
  local b = base + (i - 1) * 6
  local id, j = argv[b], leaseIndex[argv[b + 1]]
  if not j then return redis.error_reply('BADARG lease ' .. argv[b + 1]) end
  ids[i], leaseOf[i], customers[i] = id, j, argv[b + 2]
  -- an order id is written into its customer's `users` entry after a space (read_entry)
  if find(id, ' ', 1, true) then return redis.error_reply('BADARG order id with a space') end
  if claimsInIdem and argv[b + 4] ~= '' then
    keyed[#keyed + 1] = idem_field(argv[b + 2], argv[b + 4])
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
-- customer -> the index of their one order in this batch while they had no entry before it (most customers of
-- a flash sale): `held` and `claimsOf` stay '' and their entry is written in one concatenation at the end
local lone = {}
local buyers = {}            -- customers with an order confirmed in this batch
local created = {}           -- orderId -> record JSON, for this batch's orders
-- Keys claimed by this batch: in `claimsOf` (its entry's claims part grows with them), and here those that
-- cannot sit in an entry (entry_key), by idem_field.
local claimedNow = {}
local orderWrites, idemWrites, committedIds = {}, {}, {}
local orderCount, idemCount = 0, 0
local delta, committed = 0, 0
-- quantity texts already checked, with their numbers (a batch repeats a few)
local quantities = {}
for i = 1, count do
  local b = base + (i - 1) * 6
  local id, customer, j = ids[i], customers[i], leaseOf[i]
  local shard, fence = leaseShards[j], leaseFences[j]
  local key, delivery = argv[b + 4], argv[b + 5]
  -- quantity is written into the record as given: it must be a plain decimal integer
  local quantityText = argv[b + 3]
  local quantity = quantities[quantityText]
  if not quantity then
    if not find(quantityText, '^[1-9]%d*$') then return redis.error_reply('BADARG quantity ' .. quantityText) end
    quantity = tonumber(quantityText)
    quantities[quantityText] = quantity
  end
  local already = bought[customer]
  if not already then
    local entry = purchased[i]
    if entry then
      bought[customer], held[customer], claimsOf[customer] = read_entry(entry)
    else
      bought[customer], held[customer], claimsOf[customer] = 0, '', ''
    end
    already = bought[customer]
  else
    local first = lone[customer]
    if first then
      -- a second order of this customer: their first one's id and claim go into `held` and `claimsOf`
      local firstId, firstKey = ids[first], argv[base + (first - 1) * 6 + 4]
      held[customer] = ' ' .. firstId
      if firstKey ~= '' and (plain or entry_key(firstKey)) then claimsOf[customer] = '\n' .. firstKey .. '\r' .. firstId end
      lone[customer] = nil
    end
  end
  local record = existing[i] or created[id]
  local claim = nil
  if not record and key ~= '' then
    -- the customer's entry, with this batch's claims; then those of keys kept out of entries; then `idem`
    local claims = claimsOf[customer]
    local claimed = (claims ~= '' and entry_claim(claims, key)) or (idemWrites[1] and claimedNow[idem_field(customer, key)])
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
      -- a key is claimed in the entry unless it holds a line break (entry_key; never in a plain batch)
      local inEntry = key ~= '' and (plain or entry_key(key))
      if already == 0 and held[customer] == '' and claimsOf[customer] == '' then
        lone[customer] = i
      else
        held[customer] = held[customer] .. ' ' .. id
        if inEntry then claimsOf[customer] = claimsOf[customer] .. '\n' .. key .. '\r' .. id end
      end
      bought[customer] = already + quantity
      buyers[customer] = true
      local encoded
      if plain then
        local tail = tails[j]
        if not tail then
          tail = order_record_tail(shard, leaseFenceTexts[j], owner, 'bucket')
          tails[j] = tail
        end
        encoded = '{"id":"' .. id .. '","c":"' .. customer .. '","q":' .. quantityText .. ',"t":' .. nowText ..
          ',"s":"confirmed","k":"' .. key .. '","d":"' .. delivery .. tail
      else
        encoded = order_record_json(id, customer, quantityText, nowText, key, delivery, shard, leaseFenceTexts[j], owner, 'bucket', false)
      end
      created[id] = encoded
      committedIds[committed] = id
      orderWrites[orderCount + 1] = id
      orderWrites[orderCount + 2] = encoded
      orderCount = orderCount + 2
      if key ~= '' and not inEntry then
        local field = idem_field(customer, key)
        claimedNow[field] = id
        idemWrites[idemCount + 1] = field
        idemWrites[idemCount + 2] = id
        idemCount = idemCount + 2
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
  local writes = 0
  for customer in pairs(buyers) do
    local first, entry = lone[customer], nil
    if first then
      local id, key = ids[first], argv[base + (first - 1) * 6 + 4]
      if key ~= '' and (plain or entry_key(key)) then
        entry = decimal_text(bought[customer]) .. ' ' .. id .. '\n' .. key .. '\r' .. id
      else
        entry = decimal_text(bought[customer]) .. ' ' .. id
      end
    else
      entry = decimal_text(bought[customer]) .. held[customer] .. claimsOf[customer]
    end
    userWrites[writes + 1], userWrites[writes + 2] = customer, entry
    writes = writes + 2
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
