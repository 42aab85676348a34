-- ARGV: owner, shardId, maxShardUnits, spreadFactor, ttlMs, minUnits (the quantity that asked; a
-- shard smaller than one order could never serve it), demandUnits (what the instance's waiting customers
-- need, 0 = unknown: the lease is no larger, so no instance sits on units another one's customers wait for;
-- a known demand is not capped by maxShardUnits, only by the fair share).
-- Answers `{OK, fence, units, expiresAtMs, nowMs}`, `{EMPTY, sold, leased, waitlist}`,
-- `{CLOSED, reason}`, `{NOT_STARTED, msUntilStart}` or `{NOT_FOUND}`.
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
if not owners[ARGV[1]] then
  owners[ARGV[1]] = true
  count = count + 1
end
count = present_instances(now, tonumber(ARGV[5]), owners, count)
note_presence(now, ARGV[1])
-- The fair share: the pool over the spread factor and the instances present. A request that knows its
-- demand (customers waiting now, or what sold last interval) gets that much, up to the share: a crowd
-- bigger than maxShardUnits is served in one round trip, not one per maxShardUnits. Without a demand the
-- lease is also capped by maxShardUnits, so idle units do not sit in one instance.
local units = math.floor(pool / (tonumber(ARGV[4]) * count))
local demand = tonumber(ARGV[7]) or 0
if demand > 0 then
  units = math.min(units, demand)
else
  units = math.min(units, tonumber(ARGV[3]))
end
units = math.max(1, tonumber(ARGV[6]) or 1, units)
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
