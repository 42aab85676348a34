-- KEYS: the registries' names before they shared a hash tag (active, all, retiring), then their names now, in
-- the same order (`LedgerKeys.legacyRegistries`, `LedgerKeys.registries`). No prelude: these are not a sale's
-- keys. Moves what an earlier version wrote into the tagged registries and deletes the old keys; an entry
-- already in a tagged registry keeps its score there. At most 10,000 entries per key per call (the rest on the
-- next call). Answers the number of entries moved.
local moved = 0
local members = redis.call('SRANDMEMBER', KEYS[1], 10000)
if #members > 0 then
  for i = 1, #members, 500 do
    redis.call('SADD', KEYS[4], unpack(members, i, math.min(i + 499, #members)))
    redis.call('SREM', KEYS[1], unpack(members, i, math.min(i + 499, #members)))
  end
  moved = moved + #members
end
for k = 2, 3 do
  local flat = redis.call('ZRANGE', KEYS[k], 0, 9999, 'WITHSCORES')
  if #flat > 0 then
    local pairs = {}
    for i = 1, #flat, 2 do
      pairs[#pairs + 1] = flat[i + 1]
      pairs[#pairs + 1] = flat[i]
    end
    for i = 1, #pairs, 1000 do
      redis.call('ZADD', KEYS[k + 3], 'NX', unpack(pairs, i, math.min(i + 999, #pairs)))
    end
    for i = 1, #flat, 1000 do
      local names = {}
      for j = i, math.min(i + 998, #flat), 2 do names[#names + 1] = flat[j] end
      redis.call('ZREM', KEYS[k], unpack(names))
    end
    moved = moved + #flat / 2
  end
end
return moved
