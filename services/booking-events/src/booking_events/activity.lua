-- Live Dramatiq processes, and per queue those busy with it and those consuming it (booking_events.activity).
--
-- ARGV[1..6]: Dramatiq's key layout, from booking_scaling.layout.Layout.lua_args(): the
--   heartbeats key, then string.format patterns for a queue's key, its messages hash,
--   a worker's acks set (worker id, queue name), and a queue's delayed and dead queue names.
-- ARGV[7]: the pattern of a queue's presence key (booking_core.queues.presence.key).
-- ARGV[8]: the heartbeat timeout (ms); ARGV[9]: the presence TTL (ms); ARGV[10..]: the queue names.
-- Returns {live, busy per queue..., consuming per queue...}.
local heartbeats, ACKS, DELAYED = ARGV[1], ARGV[4], ARGV[5]
local CONSUMERS = ARGV[7]
local now = redis.call('time')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local live = redis.call('zrangebyscore', heartbeats, now_ms - tonumber(ARGV[8]), '+inf')
local out = {#live}
for i = 10, #ARGV do
  local busy = 0
  for _, w in ipairs(live) do
    local held = redis.call('scard', string.format(ACKS, w, ARGV[i]))
    held = held + redis.call('scard', string.format(ACKS, w, string.format(DELAYED, ARGV[i])))
    if held > 0 then
      busy = busy + 1
    end
  end
  out[#out + 1] = busy
end
for i = 10, #ARGV do
  out[#out + 1] = redis.call('zcount', string.format(CONSUMERS, ARGV[i]), now_ms - tonumber(ARGV[9]), '+inf')
end
return out
