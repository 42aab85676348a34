-- No ARGV. The sale's summary: the stored one if there is one; otherwise computed from the ledger now, and
-- stored (once: the first stored wins) when the sale is closed. A sale whose keys are gone gets nothing
-- created, and a retired sale's summary gets the retention TTL.
-- Answers `{STORED, json}`, `{LIVE, json}` (the sale is not closed: computed, not stored) or `{NOT_FOUND}`.
if redis.call('EXISTS', K.meta) == 0 then return {'NOT_FOUND'} end
local stored = redis.call('GET', K.summary)
if stored then return {'STORED', stored} end
local json = summary_json()
if redis.call('HGET', K.meta, 'status') ~= 'closed' then return {'LIVE', json} end
redis.call('SET', K.summary, json)
keep_retention({K.summary})
return {'STORED', json}
