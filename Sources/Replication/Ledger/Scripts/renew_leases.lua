-- ARGV: owner, ttlMs, count, then `count` pairs of shardId, fence.
-- Answers `{status, closedReason, sold, pool, leased, waitlist, stock, nowMs, {per lease: remaining or -1 when lost}}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local now = now_ms()
if meta.status ~= 'closed' and now >= meta.start then settle(now, meta) end
if meta.status ~= 'closed' then note_presence(now, ARGV[1]) end
local results = {}
local ttl = tonumber(ARGV[2])
for i = 0, tonumber(ARGV[3]) - 1 do
  local shard, fence = ARGV[4 + i * 2], tonumber(ARGV[5 + i * 2])
  local raw = redis.call('HGET', K.leases, shard)
  local lease = raw and cjson.decode(raw)
  if lease and lease.o == ARGV[1] and lease.f == fence and lease.e > now then
    lease.e = now + ttl
    redis.call('HSET', K.leases, shard, cjson.encode(lease))
    results[#results + 1] = lease.r
  else
    results[#results + 1] = -1
  end
end
local broken = check_invariant(meta)
if broken then return broken end
local leased = leased_total()
return {meta.status, meta.reason, num(redis.call('GET', K.sold)), num(redis.call('GET', K.pool)), leased,
  redis.call('ZCARD', K.waitlist), meta.stock, now, results}
