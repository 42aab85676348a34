-- ARGV: owner, shardId, maxShardUnits, spreadFactor, ttlMs, minUnits (the quantity that asked; a
-- shard smaller than one order could never serve it), demandUnits (what the instance's waiting customers
-- need, 0 = unknown: the lease is no larger, so no instance sits on units another one's customers wait for;
-- a known demand is not capped by maxShardUnits, only by the fair share).
-- ARGV[8] = toleranceUs, ARGV[9] = delayUs, ARGV[10] = n, then n pairs (arrivalUs, cumulativeUnits): the
-- instance's parked customers in arrival order (their arrival on its clock, or its front's, and the units
-- of those up to that arrival), 0 pairs for a prefetch; then, optionally, sentUs: the instance's clock when
-- it sent this request (see `shift`).
-- Across instances, units go to the customers who arrived first: while another instance's head (its first
-- customer still waiting, see set_head) arrived more than toleranceUs earlier, this one is answered WAIT and
-- leases nothing; else the lease covers exactly its customers who arrived no later than toleranceUs after
-- that head (no headroom, no share cap: they are waiting now). Arrivals closer than toleranceUs count as
-- simultaneous: without it, instances whose customers interleave would take turns one unit at a time. With
-- no other head the share rule below applies. A prefetch leases nothing while any other instance's customers
-- wait.
-- The fleet order delay (delayUs > 0, with other instances present): a customer is leased a unit only once
-- delayUs passed since their arrival (ledger clock), so that a customer who arrived earlier but reached
-- their instance up to delayUs later is among the heads by then; such a lease has no headroom, and a
-- prefetch leases nothing. Exact arrival order across the fleet, for delayUs more latency. Arrivals from a
-- clock more than a second off the ledger's are moved onto the ledger's clock (see `shift`); from an instance
-- that does not say its clock, those more than a second ahead count as now, without the delay (see `ahead`).
-- Answers `{OK, fence, units, expiresAtMs, nowMs}`, `{EMPTY, sold, leased, waitlist}`, `{WAIT, arrivalUs}`
-- (the earliest other head on the ledger's clock, or this instance's first customer, as given, not yet due),
-- `{CLOSED, reason}`, `{NOT_STARTED, msUntilStart}` or `{NOT_FOUND}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local clock = now_us()  -- the ledger's clock in microseconds, for the arrivals
local now = math.floor(clock / 1000)
local gate = settle(now, meta)
if gate then return gate end
local pool = num(redis.call('GET', K.pool))
local waiting = redis.call('ZCARD', K.waitlist)
local leased, owners, count = leased_total()
-- Units go to waiting customers first: no new lease while someone waits.
if pool <= 0 or waiting > 0 then
  set_head(ARGV[1], nil, now)  -- its customers join the waitlist now
  return {'EMPTY', num(redis.call('GET', K.sold)), leased, waiting}
end
local tolerance = tonumber(ARGV[8]) or 0
local delay = tonumber(ARGV[9]) or 0
local pairs_given = tonumber(ARGV[10]) or 0
if tolerance < 0 or delay < 0 or pairs_given < 0 or pairs_given > 1000 or #ARGV < 10 + 2 * pairs_given then
  return redis.error_reply('BADARG arrival pairs')
end
local function given_at(i) return tonumber(ARGV[9 + 2 * i]) end
-- The instance's clock less the ledger's, as this request measures it: its clock when it sent the request
-- less the ledger's clock now, i.e. the true skew less the request's latency. NTP keeps hosts within
-- milliseconds and a request is not a second late, so beyond a second either way the instance's clock is off:
-- its arrivals are moved onto the ledger's clock by the measured skew (to within the request's latency). A
-- clock running behind would otherwise put its customers first across the fleet, and one running ahead hold
-- them for the skew under the fleet order delay.
local sent = tonumber(ARGV[11 + 2 * pairs_given])
if ARGV[11 + 2 * pairs_given] and not (sent and sent > 0) then return redis.error_reply('BADARG sentUs') end
local shift = 0
if sent and math.abs(sent - clock) > 1000000 then shift = sent - clock end
-- An instance that does not say its clock (its arrivals are its front's stamps, which the instance caps at its
-- own clock; or an older instance, mid-upgrade), whose newest customer arrived more than a second in the
-- ledger's future, has a clock running ahead: its arrivals count as now, and the fleet order delay is not
-- applied to them (it would hold its customers for as long as the skew).
local ahead = pairs_given > 0 and given_at(pairs_given) - shift > clock + 1000000
local function arrival_at(i)
  local at = given_at(i) - shift
  if ahead and at > clock then return clock end
  return at
end
local function units_to(i) return tonumber(ARGV[10 + 2 * i]) end
-- The head to leave after a grant of `granted` units: the first pair not wholly covered, or none.
local function head_after(granted)
  for i = 1, pairs_given do
    if units_to(i) > granted then return arrival_at(i) end
  end
  return nil
end
if not owners[ARGV[1]] then
  owners[ARGV[1]] = true
  count = count + 1
end
local stats = redis.call('HGETALL', K.stats)
count = present_instances(stats, now, tonumber(ARGV[5]), owners, count)
note_presence(now, ARGV[1])
local other, other_owner = earliest_other_head(stats, now, ARGV[1])
-- The latest arrival this lease may serve; nil: the share rule below.
local limit = nil
if delay > 0 and count > 1 and not ahead then
  if pairs_given == 0 then return {'WAIT', 0} end
  limit = clock - delay
  if arrival_at(1) > limit then
    set_head(ARGV[1], arrival_at(1), now)
    -- on the instance's own clock, as it sent it: the instance knows its first customer by it and counts
    -- the delay from it
    return {'WAIT', given_at(1)}
  end
end
if other then
  if pairs_given == 0 then
    return {'WAIT', other}
  end
  local first = arrival_at(1)
  if other + tolerance < first or (other + tolerance == first and other_owner < ARGV[1]) then
    set_head(ARGV[1], first, now)
    return {'WAIT', other}
  end
  if not limit or other + tolerance < limit then limit = other + tolerance end
end
local gated = nil
if limit then
  gated = 0
  for i = 1, pairs_given do
    if arrival_at(i) > limit then break end
    gated = units_to(i)
  end
  assert(gated >= 1, 'a gated lease covers at least the head')
end
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
if gated then units = gated end
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
if pairs_given > 0 then set_head(ARGV[1], head_after(units), now) end
local broken = check_invariant(meta)
if broken then return broken end
return {'OK', fence, units, expires, now}
