-- enter.lua: a socket is present on one or more pages (also the refresh).
-- KEYS[1] Presence.Sockets   KEYS[2] Presence.SocketUser   KEYS[3] SessionLists:<socketId>
-- ARGV[1] socketId  ARGV[2] userId  ARGV[3] deadline (unix ms)  ARGV[4] now (unix ms)
-- ARGV[5] PEXPIRE of SessionLists (ms)  ARGV[6] "1" = refresh only  ARGV[7..] listIds
-- Returns the listIds on which the user was newly added (=> emit "entered").
-- With refresh only, lists the user is not on are left alone (nobody else
-- is changed) and returned instead: the caller enters them under its list
-- lock, so that their "entered" is ordered with the list's other deltas.
local sid, uid, deadline, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local refresh = ARGV[6] == '1'
local out = {}
local done = 0
for i = 7, #ARGV do
  local l = ARGV[i]
  if refresh and redis.call('SISMEMBER', 'PresenceList:' .. l, uid) == 0 then
    out[#out + 1] = l
  else
    local sk = 'PresenceList:' .. l .. ':UserSessions:' .. uid
    redis.call('ZADD', sk, deadline, sid)
    redis.call('ZREMRANGEBYSCORE', sk, '-inf', now)
    redis.call('SADD', KEYS[3], l)
    if redis.call('SADD', 'PresenceList:' .. l, uid) == 1 then
      out[#out + 1] = l
    end
    done = done + 1
  end
end
if done > 0 then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  redis.call('ZADD', KEYS[1], deadline, sid)
  redis.call('HSET', KEYS[2], sid, uid)
end
return out
