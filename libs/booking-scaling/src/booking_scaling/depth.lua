-- The depth of each queue, read in one atomic step (booking_scaling.depth.QueueReader).
--
-- ARGV[1..6]: Dramatiq's key layout, from booking_scaling.layout.Layout.lua_args(): the
--   heartbeats key, then string.format patterns for a queue's key (queue name), its
--   messages hash (queue name), a worker's acks set (worker id, queue name), and a
--   queue's delayed and dead queue names (queue name).  No key name is spelled here.
-- ARGV[7]: the lead time in ms ('' when due counts are not asked for).
-- ARGV[8..]: the queue names.
-- Returns, per queue: {ready, in flight, delayed (listed + held), dead, age of the oldest ready (ms), due (-1: not asked)}.
local heartbeats, QUEUE, MESSAGES, ACKS, DELAYED, DEAD = unpack(ARGV, 1, 6)
local lead = tonumber(ARGV[7])
local now = redis.call('time')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local workers = redis.call('zrange', heartbeats, 0, -1)

-- How many of the delayed message ids are due by `horizon` (ms): eta <= horizon, or eta unreadable.
local function count_due(msgs_key, ids, horizon)
  local due = 0
  for first = 1, #ids, 500 do
    local bodies = redis.call('hmget', msgs_key, unpack(ids, first, math.min(first + 499, #ids)))
    for _, body in ipairs(bodies) do
      local eta
      if body then
        local ok, msg = pcall(cjson.decode, body)
        if ok and type(msg) == 'table' and type(msg.options) == 'table' then
          eta = tonumber(msg.options.eta)
        end
      end
      if eta == nil or eta <= horizon then
        due = due + 1
      end
    end
  end
  return due
end

local out = {}
for i = 8, #ARGV do
  local q = ARGV[i]
  local dq = string.format(DELAYED, q)
  local ready_key, dq_key = string.format(QUEUE, q), string.format(QUEUE, dq)
  local dq_msgs = string.format(MESSAGES, dq)
  local inflight, held, due = 0, 0, -1
  if lead then
    due = count_due(dq_msgs, redis.call('lrange', dq_key, 0, -1), now_ms + lead)
  end
  for _, w in ipairs(workers) do
    inflight = inflight + redis.call('scard', string.format(ACKS, w, q))
    local held_key = string.format(ACKS, w, dq)
    held = held + redis.call('scard', held_key)
    if lead then
      due = due + count_due(dq_msgs, redis.call('smembers', held_key), now_ms + lead)
    end
  end
  -- Dramatiq pushes on the right and fetches from the left: index 0 is the oldest.
  local age = 0
  local head = redis.call('lindex', ready_key, 0)
  if head then
    local body = redis.call('hget', string.format(MESSAGES, q), head)
    if body then
      local ok, msg = pcall(cjson.decode, body)
      if ok and type(msg) == 'table' and tonumber(msg.message_timestamp) then
        age = math.max(0, now_ms - tonumber(msg.message_timestamp))
      end
    end
  end
  out[#out + 1] = {
    redis.call('llen', ready_key),
    inflight,
    redis.call('llen', dq_key) + held,
    redis.call('zcard', string.format(QUEUE, string.format(DEAD, q))),
    age,
    due,
  }
end
return out
