-- refresh.lua: the refresher's batch: pushes the deadlines of several sockets
-- on the lists their users are on, in one round trip.
-- KEYS[1] Presence.Sockets   KEYS[2] Presence.SocketUser
-- ARGV[1] deadline (unix ms)  ARGV[2] now (unix ms)  ARGV[3] PEXPIRE of
-- SessionLists (ms)  ARGV[4..] per socket: socketId, userId, n, listId * n
-- Lists the user is not on are left alone (nobody's presence changes here)
-- and returned as {socketId, n, listId * n, ...}: the caller enters them
-- under their list locks, so that their "entered" is ordered with the list's
-- other deltas.
local deadline, now, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local i = 4
while i <= #ARGV do
  local sid, uid, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local skey = 'SessionLists:' .. sid
  local missing = {}
  for j = i + 3, i + 2 + n do
    local l = ARGV[j]
    if redis.call('SISMEMBER', 'PresenceList:' .. l, uid) == 0 then
      missing[#missing + 1] = l
    else
      local sk = 'PresenceList:' .. l .. ':UserSessions:' .. uid
      redis.call('ZADD', sk, deadline, sid)
      redis.call('ZREMRANGEBYSCORE', sk, '-inf', now)
      redis.call('SADD', skey, l)
    end
  end
  if #missing < n then
    redis.call('PEXPIRE', skey, ttl)
    redis.call('ZADD', KEYS[1], deadline, sid)
    redis.call('HSET', KEYS[2], sid, uid)
  end
  if #missing > 0 then
    out[#out + 1] = sid
    out[#out + 1] = tostring(#missing)
    for _, l in ipairs(missing) do
      out[#out + 1] = l
    end
  end
  i = i + 3 + n
end
return out
