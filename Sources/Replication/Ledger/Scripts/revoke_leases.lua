-- ARGV: owner ("" for every instance). Revokes leases (rebalance, drain): their remaining units go to
-- the pool (waitlist first); the owners' next commits on them are fenced. Answers `{revokedLeases, returnedUnits}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local now = now_ms()
local all = redis.call('HGETALL', K.leases)
local revoked, units = 0, 0
for i = 1, #all, 2 do
  local lease = cjson.decode(all[i + 1])
  if ARGV[1] == '' or lease.o == ARGV[1] then
    redis.call('HDEL', K.leases, all[i])
    if lease.r > 0 then redis.call('INCRBY', K.pool, lease.r) end
    revoked, units = revoked + 1, units + lease.r
    log_stock(now, 'lease_revoked', lease.r, lease.f, lease.o)
  end
end
if meta.status ~= 'closed' and now >= meta.start then settle(now, meta) end
local broken = check_invariant(meta)
if broken then return broken end
return {revoked, units}
