-- ARGV: then the meta hash as field/value pairs (must include stock and status), fence. The last step
-- of a rebuild: pool = stock - sold, the fence above every fence seen, meta written (the ledger is live
-- again). Answers `{OK, pool, sold}` or an `INVARIANT` error when the orders exceed the stock.
if redis.call('EXISTS', K.meta) == 1 then return {'LIVE'} end
local sold = num(redis.call('GET', K.sold))
local fields = {}
for i = 2, #ARGV, 2 do fields[ARGV[i]] = ARGV[i + 1] end
local stock = tonumber(fields.stock)
if not stock or sold > stock then
  return redis.error_reply('INVARIANT restored sold=' .. sold .. ' exceeds stock=' .. tostring(fields.stock))
end
redis.call('SET', K.sold, sold)
redis.call('SET', K.pool, stock - sold)
redis.call('SET', K.fence, ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', K.meta, ARGV[i], ARGV[i + 1]) end
local now = now_ms()
log_stock(now, 'rebuilt', stock - sold, tonumber(ARGV[1]), '')
local meta = load_meta()
local broken = check_invariant(meta)
if broken then return broken end
return {'OK', stock - sold, sold}
