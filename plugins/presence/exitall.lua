-- exitall.lua: a socket is gone (disconnect) or expired (sweeper)
-- (mark.lua comes first).
-- KEYS[1] Presence.Sockets   KEYS[2] Presence.SocketUser   KEYS[3] SessionLists:<socketId>
-- ARGV[1] socketId  ARGV[2] now (unix ms)  ARGV[3] "1" = sweep: only if the
-- socket's deadline has passed  ARGV[4] userId to use when Presence.SocketUser
-- has none ("" = unknown)  ARGV[5] instance id  ARGV[6] mark TTL (ms,
-- '0' = none)
-- Returns {} when nothing was done, else {userId, listId, recheck, ...} with
-- the listIds the user was removed from (=> emit "left" for each; recheck
-- '1' => schedule a recheck, see mark.lua).
local sid, now = ARGV[1], tonumber(ARGV[2])
if ARGV[3] == '1' then
  local d = redis.call('ZSCORE', KEYS[1], sid)
  if not d or tonumber(d) > now then
    return {}
  end
end
local uid = redis.call('HGET', KEYS[2], sid)
if not uid then
  uid = ARGV[4]
end
local out = {uid}
if uid ~= '' then
  local lists = redis.call('SMEMBERS', KEYS[3])
  for _, l in ipairs(lists) do
    local sk = 'PresenceList:' .. l .. ':UserSessions:' .. uid
    redis.call('ZREM', sk, sid)
    redis.call('ZREMRANGEBYSCORE', sk, '-inf', ARGV[2])
    if redis.call('ZCARD', sk) == 0 then
      if redis.call('SREM', 'PresenceList:' .. l, uid) == 1 then
        out[#out + 1] = l
        out[#out + 1] = tostring(mark(l, uid, ARGV[5], ARGV[6]))
      end
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], sid)
redis.call('HDEL', KEYS[2], sid)
return out
