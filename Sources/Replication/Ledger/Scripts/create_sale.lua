-- ARGV: id, name, stock, startMs, endMs, limit. Answers `{OK, nowMs}` or `{EXISTS}`.
if redis.call('EXISTS', K.meta) == 1 then return {'EXISTS'} end
local now = now_ms()
local stock = tonumber(ARGV[3])
assert(stock and stock >= 1, 'stock must be positive')
redis.call('HSET', K.meta, 'id', ARGV[1], 'name', ARGV[2], 'stock', stock, 'startMs', ARGV[4],
  'endMs', ARGV[5], 'limit', ARGV[6], 'status', 'scheduled', 'createdAtMs', now)
redis.call('SET', K.pool, stock)
redis.call('SET', K.sold, 0)
redis.call('SET', K.fence, 0)
log_stock(now, 'created', stock, 0, '')
return {'OK', now}
