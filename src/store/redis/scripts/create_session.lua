-- Store a session (or trusted device) and index it under its user; the index lives as long as
-- its longest-lived member.
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('EXPIRETIME', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('EXPIREAT', KEYS[2], ARGV[2])
end
return 1
