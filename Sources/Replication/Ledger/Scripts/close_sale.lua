-- ARGV: mode: "auto" (close if the end passed or all is sold), or a reason to close with now: "ended",
-- "sold_out" or "closed" (an operator's close).
-- Answers `{status, closedReason, 1 if this call closed it}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local now = now_ms()
local was_open = meta.status ~= 'closed'
if was_open then
  if ARGV[1] == 'auto' then
    if now >= meta.start then settle(now, meta) end
  else
    close_sale(now, ARGV[1])
    meta.status, meta.reason = 'closed', ARGV[1]
  end
end
local broken = check_invariant(meta)
if broken then return broken end
return {meta.status, meta.reason, (was_open and meta.status == 'closed') and 1 or 0}
