-- Read-only, atomic view of a sale: `{metaFlat, pool, sold, leasesFlat, waitlist, statsFlat, buyers, nowMs}`.
if redis.call('EXISTS', K.meta) == 0 then return {'NOT_FOUND'} end
return {redis.call('HGETALL', K.meta), num(redis.call('GET', K.pool)), num(redis.call('GET', K.sold)),
  redis.call('HGETALL', K.leases), redis.call('ZCARD', K.waitlist), redis.call('HGETALL', K.stats),
  redis.call('HLEN', K.users), now_ms()}
