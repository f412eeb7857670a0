-- Raise the number in KEYS[1] to ARGV[1] unless it is already higher; returns the value now held.
local held = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local wanted = tonumber(ARGV[1])
if wanted > held then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
return held
