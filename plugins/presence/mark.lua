-- mark.lua, put before enter.lua, exit.lua, exitall.lua and recheck.lua:
-- mark notes that host instance tok sent a delta of user uid on list l
-- (PresenceDelta:<l>:<uid> = tok for px ms) and returns 1 when the previous
-- delta, still marked, came from another instance: the two went to observers
-- by different paths (local sends, Redis pub/sub) and may have arrived
-- swapped, so the caller schedules a recheck (recheck.go). px '0' = rechecks
-- are off: nothing is marked.
local function mark(l, uid, tok, px)
  if px == '0' then
    return 0
  end
  local k = 'PresenceDelta:' .. l .. ':' .. uid
  local prev = redis.call('GET', k)
  redis.call('SET', k, tok, 'PX', px)
  if prev and prev ~= tok then
    return 1
  end
  return 0
end
