-- exit.lua: a socket is not present on one page any more (mark.lua comes first).
-- KEYS[1] Presence.Sockets   KEYS[2] Presence.SocketUser   KEYS[3] SessionLists:<socketId>
-- ARGV[1] socketId  ARGV[2] userId  ARGV[3] now (unix ms)  ARGV[4] listId
-- ARGV[5] instance id  ARGV[6] mark TTL (ms, '0' = none)
-- Returns 0 when the user is still on the page, 1 when the user was removed
-- from it (=> emit "left"), 2 when removed and a recheck is due (mark.lua).
local sid, uid, now, l = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sk = 'PresenceList:' .. l .. ':UserSessions:' .. uid
redis.call('ZREM', sk, sid)
redis.call('ZREMRANGEBYSCORE', sk, '-inf', now)
redis.call('SREM', KEYS[3], l)
local left = 0
if redis.call('ZCARD', sk) == 0 then
  left = redis.call('SREM', 'PresenceList:' .. l, uid)
  if left == 1 then
    left = left + mark(l, uid, ARGV[5], ARGV[6])
  end
end
if redis.call('SCARD', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], sid)
  redis.call('HDEL', KEYS[2], sid)
end
return left
