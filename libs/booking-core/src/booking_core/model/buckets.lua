-- One tenant's token bucket, as GCRA (the generic cell rate algorithm): the bucket is
-- one number, the "theoretical arrival time" (TAT) at which it would be full again,
-- so a decision is one GET and at most one SET, atomic because Redis runs a script
-- alone.  The clock is Redis's own (TIME), so API replicas with skewed clocks share
-- one bucket correctly.  Times are microseconds.
--
-- KEYS[1]  the bucket (a string holding the TAT; it expires once the bucket is full)
-- KEYS[2]  the plans' generation counter (read only: its value is returned so that
--          each API process can drop its cached plans when an operator changes one)
-- ARGV[1]  the emission interval: microseconds per token (1e6 / rate)
-- ARGV[2]  the burst: how many tokens the full bucket holds
-- ARGV[3]  the cost: tokens to take (1), or -1 to give one back (a refund)
--
-- Returns {allowed 0|1, remaining tokens, retry after us, full again after us, generation}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tolerance = interval * burst
local generation = redis.call('GET', KEYS[2]) or '0'

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end

local function save(value)
  local ttl_ms = math.ceil((value - now) / 1000)
  if ttl_ms > 0 then
    -- %.0f: tostring would print 14 significant digits and lose the microseconds
    redis.call('SET', KEYS[1], string.format('%.0f', value), 'PX', ttl_ms)
  else
    redis.call('DEL', KEYS[1])
  end
end

if cost < 0 then
  local back = math.max(tat + cost * interval, now)
  save(back)
  return {1, math.floor((tolerance - (back - now)) / interval), 0, back - now, generation}
end

local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, math.floor((tolerance - (tat - now)) / interval), allow_at - now, tat - now, generation}
end
save(new_tat)
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now, generation}
