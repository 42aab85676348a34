-- ARGV: owner, shardId, fence. Gives the lease's remaining units back to the pool (waitlist first).
-- Answers `{OK, returnedUnits}` or `{LOST}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local raw = redis.call('HGET', K.leases, ARGV[2])
local lease = raw and cjson.decode(raw)
if not lease or lease.o ~= ARGV[1] or lease.f ~= tonumber(ARGV[3]) then return {'LOST'} end
local now = now_ms()
redis.call('HDEL', K.leases, ARGV[2])
if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
log_stock(now, 'lease_returned', lease.r, lease.f, lease.o)
settle(now, meta)
local broken = check_invariant(meta)
if broken then return broken end
return {'OK', lease.r}
