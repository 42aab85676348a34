-- ARGV: group. Creates the drainer's consumer group on the outbox, the commit log and the stock log
-- (`MKSTREAM`: a stream may not exist yet) only while the sale's meta exists, with the retention TTL on a retired sale's new
-- stream: a drainer whose read of meta raced the keys' expiry creates no stream that lives forever.
-- Answers `{OK}` or `{NOT_FOUND}`.
if redis.call('EXISTS', K.meta) == 0 then return {'NOT_FOUND'} end
for _, stream in ipairs({K.outbox, K.commits, K.stocklog}) do
  local reply = redis.pcall('XGROUP', 'CREATE', stream, ARGV[1], '0', 'MKSTREAM')
  if type(reply) == 'table' and reply.err and not string.find(reply.err, 'BUSYGROUP', 1, true) then return reply end
end
keep_retention({K.outbox, K.commits, K.stocklog})
return {'OK'}
