-- Appended to the prelude of the scripts that may run after a sale closed or retired (fail_order,
-- store_summary, add_rejections, ensure_groups, retire_sale), never to the order path's. Their KEYS are
-- `LedgerKeys.retained`: every key of the sale, then the summary (KEYS[17]).
K.summary = KEYS[17]

-- Retirement gives every key of the sale the retention TTL, so meta carrying a TTL means "retired". A key
-- written after that which did not exist then (a first past order, a customer's entry, statistics, a
-- stream, the summary) gets meta's remaining TTL here, in the same script that wrote it: a retired sale
-- never leaves a key that lives forever. `keys` defaults to every key of the script. Answers meta's PTTL.
local function keep_retention(keys)
  local ttl = redis.call('PTTL', K.meta)
  if ttl < 0 then return ttl end
  for _, key in ipairs(keys or KEYS) do
    if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, ttl) end
  end
  return ttl
end

local function decimal(value) return string.format('%d', tonumber(value) or 0) end

-- The sale's summary as JSON, as `SaleSummary` (Swift, Codable) encodes it, computed from the ledger as it is
-- now: integers as decimals (never in exponent notation), optional fields left out when unknown.
local function summary_json()
  local meta, stats, rejections = {}, {}, {}
  local flat = redis.call('HGETALL', K.meta)
  for i = 1, #flat, 2 do meta[flat[i]] = flat[i + 1] end
  flat = redis.call('HGETALL', K.stats)
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 11) == 'rejections:' then
      rejections[#rejections + 1] = cjson.encode(string.sub(flat[i], 12)) .. ':' .. decimal(flat[i + 1])
    else
      stats[flat[i]] = flat[i + 1]
    end
  end
  table.sort(rejections)
  local parts = {
    '"saleID":' .. cjson.encode(meta.id or ''),
    '"final":' .. (meta.status == 'closed' and 'true' or 'false'),
    '"status":' .. cjson.encode(meta.status or ''),
    '"stock":' .. decimal(meta.stock),
    '"sold":' .. decimal(redis.call('GET', K.sold)),
    '"orders":' .. decimal(stats.orders),
    '"buyers":' .. decimal(redis.call('HLEN', K.users)),
    '"cancelled":' .. decimal(stats.cancelled),
    '"rejections":{' .. table.concat(rejections, ',') .. '}',
    '"waitlistJoined":' .. decimal(stats.waitlistJoined),
    '"waitlistServed":' .. decimal(stats.waitlistServed),
    '"waitlistUnserved":' .. decimal(stats.waitlistUnserved),
  }
  for _, field in ipairs({{'openedAtMs', 'openedAtMilliseconds'}, {'soldOutAtMs', 'soldOutAtMilliseconds'},
                          {'closedAtMs', 'closedAtMilliseconds'}}) do
    if meta[field[1]] then parts[#parts + 1] = '"' .. field[2] .. '":' .. decimal(meta[field[1]]) end
  end
  if meta.closedReason and meta.closedReason ~= '' then
    parts[#parts + 1] = '"closedReason":' .. cjson.encode(meta.closedReason)
  end
  return '{' .. table.concat(parts, ',') .. '}'
end
