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
-- ARGV[3]  tokens wanted (at least 1; fewer are taken if fewer are spare), or 0: take none
-- ARGV[4]  divisor: take at most 1/divisor of the tokens left (and always 1 if any is
--          left), so that a process leasing tokens ahead leaves most to the others
-- ARGV[5]  tokens given back first (a lease's unused rest, a replay's token)
--
-- Returns {tokens taken (0: refused), tokens left, retry after us, full again after us,
-- generation}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local divisor = tonumber(ARGV[4])
local back = tonumber(ARGV[5])
local tolerance = interval * burst
local generation = redis.call('GET', KEYS[2]) or '0'

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
if back > 0 then
  tat = math.max(tat - back * interval, now)
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

local spare = math.floor((tolerance - (tat - now)) / interval)
if want < 1 or spare < 1 then
  if back > 0 then
    save(tat)
  end
  local retry = 0
  if spare < 1 then
    retry = tat + interval - tolerance - now
  end
  return {0, math.max(spare, 0), retry, tat - now, generation}
end
local taken = math.min(want, math.max(1, math.floor(spare / divisor)))
local new_tat = tat + taken * interval
save(new_tat)
return {taken, spare - taken, 0, new_tat - now, generation}
