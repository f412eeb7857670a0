-- Count one attempt under the account key and the account-and-address key, unless either is
-- at its limit: then return the milliseconds left in its window, counting nothing. A key's
-- window starts with its first attempt.
for i, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') >= tonumber(ARGV[i]) then
    return math.max(redis.call('PTTL', k), 1)
  end
end
for _, k in ipairs(KEYS) do
  if redis.call('INCR', k) == 1 then redis.call('PEXPIRE', k, ARGV[3]) end
end
return 0
