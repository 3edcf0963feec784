-- expired.lua: the sweeper's batch of sockets whose deadline has passed.
-- KEYS[1] Presence.Sockets   ARGV[1] now (unix ms)   ARGV[2] limit
-- Returns {socketId, n, listId * n, socketId, n, ...}: each expired socket
-- with the lists SessionLists:<socketId> holds, so the sweeper can lock those
-- lists before running exitall.lua without another round trip per socket.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, sid in ipairs(ids) do
  local lists = redis.call('SMEMBERS', 'SessionLists:' .. sid)
  out[#out + 1] = sid
  out[#out + 1] = tostring(#lists)
  for _, l in ipairs(lists) do
    out[#out + 1] = l
  end
end
return out
