-- Move a live session's expiry (record and key TTL together); 0 when it is gone.
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local s = cjson.decode(v)
s['expires_at'] = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(s), 'EXAT', ARGV[1])
local t = redis.call('EXPIRETIME', KEYS[2])
if t >= 0 and t < tonumber(ARGV[1]) then redis.call('EXPIREAT', KEYS[2], ARGV[1]) end
return 1
