-- ARGV: retentionSeconds, group, summary (the JSON the caller wrote to MongoDB), then the meta hash it wrote
-- to MongoDB as field/value pairs. Retires a closed, summarized, drained sale on one atomic read: only while
-- meta and the summary are exactly what MongoDB got, the outbox and the commit log are empty, nothing is pending in the group on
-- either stream and every stock-log entry was delivered to it. Every key of the sale then gets the retention
-- TTL (`EXPIRE NX`: set once, a later call does not push the expiry out).
-- Answers `{RETIRED, nowMs}`, `{CHANGED}` (the sale document must be written again first), `{BACKLOG}` or
-- `{NOT_FOUND}`.
local flat = redis.call('HGETALL', K.meta)
if #flat == 0 then return {'NOT_FOUND'} end
local written, fields = {}, 0
for i = 4, #ARGV - 1, 2 do
  written[ARGV[i]] = ARGV[i + 1]
  fields = fields + 1
end
if fields * 2 ~= #flat then return {'CHANGED'} end
local status
for i = 1, #flat, 2 do
  if written[flat[i]] ~= flat[i + 1] then return {'CHANGED'} end
  if flat[i] == 'status' then status = flat[i + 1] end
end
if status ~= 'closed' or redis.call('GET', K.summary) ~= ARGV[3] then return {'CHANGED'} end
-- The commit log names its orders by id: its records are in K.orders, which gets its TTL below only once no
-- entry is left to name them (and a closed sale commits nothing, so none is added after).
if redis.call('XLEN', K.outbox) > 0 or redis.call('XLEN', K.commits) > 0 then return {'BACKLOG'} end
for _, stream in ipairs({K.outbox, K.commits, K.stocklog}) do
  local pending = redis.pcall('XPENDING', stream, ARGV[2])
  if pending.err or pending[1] > 0 then return {'BACKLOG'} end
end
-- `<ms>-<seq>` ids compared as numbers (ms has 13 digits: exact in a Lua number)
local function id_below(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local newest = redis.call('XREVRANGE', K.stocklog, '+', '-', 'COUNT', 1)
if #newest > 0 then
  local delivered
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', K.stocklog)) do
    local info = {}
    for i = 1, #group - 1, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == ARGV[2] then delivered = info['last-delivered-id'] end
  end
  if not delivered or id_below(delivered, newest[1][1]) then return {'BACKLOG'} end
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[1], 'NX') end
return {'RETIRED', now_ms()}
