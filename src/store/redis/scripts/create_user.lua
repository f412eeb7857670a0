-- Claim the email, then write the user and, when one is given (KEYS[3]), its new
-- organization; 0 when the email is taken.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[3]) end
return 1
