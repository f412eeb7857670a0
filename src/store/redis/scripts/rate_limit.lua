-- GCRA, the algorithm `governor` runs in process: a burst of `burst`, one slot back every
-- `emission` ms. Redis's own clock is used so that instances with skewed clocks agree.
-- Returns 0 when allowed, else the milliseconds to wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local emission = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + emission
local allow_at = next_tat - emission * tonumber(ARGV[2])
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return 0
