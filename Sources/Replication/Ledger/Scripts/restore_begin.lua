-- ARGV: force ("1" or "0"). First step of a ledger rebuild: refuses (`{LIVE, status}`) while the sale's
-- meta exists unless forced; otherwise deletes every key of the sale (a half-finished earlier rebuild
-- never wrote meta, so it is wiped too) and answers `{OK}`.
if ARGV[1] ~= '1' and redis.call('EXISTS', K.meta) == 1 then
  return {'LIVE', redis.call('HGET', K.meta, 'status') or ''}
end
for _, key in ipairs(KEYS) do redis.call('DEL', key) end
return {'OK'}
