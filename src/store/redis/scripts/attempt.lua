-- The rule is `store::judge_attempt`; this is it in one atomic step (expiry is the key's own).
-- One guess at an MFA code: compare, and count a wrong one, atomically; the right code
-- deletes the challenge. Returns {0} unknown, {2} exhausted, {3, remaining} wrong, {1, record}.
local v = redis.call('GET', KEYS[1])
if not v then return {0, ''} end
local c = cjson.decode(v)
local max = tonumber(ARGV[2])
if c['attempts'] >= max then return {2, ''} end
if c['code_hash'] ~= ARGV[1] then
  c['attempts'] = c['attempts'] + 1
  redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
  return {3, tostring(max - c['attempts'])}
end
redis.call('DEL', KEYS[1])
return {1, v}
