-- ARGV: mode: "auto" (close if the end passed or all is sold), "ended" or "sold_out" (force).
-- Answers `{status, closedReason}`.
local meta = load_meta()
if not meta then return {'NOT_FOUND'} end
local now = now_ms()
if meta.status ~= 'closed' then
  if ARGV[1] == 'auto' then
    if now >= meta.start then settle(now, meta) end
  else
    close_sale(now, ARGV[1])
    meta.status, meta.reason = 'closed', ARGV[1]
  end
end
local broken = check_invariant(meta)
if broken then return broken end
return {meta.status, meta.reason}
