-- recheck.lua: whether a user is on a page, for a recheck (mark.lua comes
-- first). It marks the delta it lets the caller send, like a transition, so
-- that a transition elsewhere racing this re-send schedules its own recheck.
-- ARGV[1] listId  ARGV[2] userId  ARGV[3] instance id  ARGV[4] mark TTL (ms)
-- Returns 1 when the user is on the page (=> emit "entered"), else 0 (=> "left").
local l, uid = ARGV[1], ARGV[2]
local on = redis.call('SISMEMBER', 'PresenceList:' .. l, uid)
mark(l, uid, ARGV[3], ARGV[4])
return on
