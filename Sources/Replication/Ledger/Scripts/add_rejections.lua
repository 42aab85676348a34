-- ARGV: pairs of code, count. Adds rejection counts to the sale's statistics. Nothing for a sale whose keys
-- are gone (the counts would create a key that outlives it); statistics created after retirement get the
-- retention TTL. Answers 1, or 0 when the sale is gone.
if redis.call('EXISTS', K.meta) == 0 then return 0 end
for i = 1, #ARGV - 1, 2 do redis.call('HINCRBY', K.stats, 'rejections:' .. ARGV[i], ARGV[i + 1]) end
keep_retention({K.stats})
return 1
