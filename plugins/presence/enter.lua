-- enter.lua: a socket is present on one or more pages (mark.lua comes first).
-- KEYS[1] Presence.Sockets   KEYS[2] Presence.SocketUser   KEYS[3] SessionLists:<socketId>
-- ARGV[1] socketId  ARGV[2] userId  ARGV[3] deadline (unix ms)  ARGV[4] now (unix ms)
-- ARGV[5] PEXPIRE of SessionLists (ms)  ARGV[6] instance id  ARGV[7] mark
-- TTL (ms, '0' = none)  ARGV[8..] listIds
-- Returns {listId, recheck, ...} for the lists on which the user was newly
-- added (=> emit "entered"; recheck '1' => schedule a recheck, see mark.lua).
-- The refresher uses refresh.lua instead, which changes nobody's presence.
local sid, uid, deadline, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 8, #ARGV do
  local l = ARGV[i]
  local sk = 'PresenceList:' .. l .. ':UserSessions:' .. uid
  redis.call('ZADD', sk, deadline, sid)
  redis.call('ZREMRANGEBYSCORE', sk, '-inf', now)
  redis.call('SADD', KEYS[3], l)
  if redis.call('SADD', 'PresenceList:' .. l, uid) == 1 then
    out[#out + 1] = l
    out[#out + 1] = tostring(mark(l, uid, ARGV[6], ARGV[7]))
  end
end
if #ARGV >= 8 then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  redis.call('ZADD', KEYS[1], deadline, sid)
  redis.call('HSET', KEYS[2], sid, uid)
end
return out
