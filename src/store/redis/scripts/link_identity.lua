-- Link an identity-provider account (KEYS[1]) to user ARGV[1], whose link at that issuer is
-- KEYS[2], with subject ARGV[2]. Returns {1, owner} when the account is (now, or already)
-- linked, {2, ''} when the user is already linked to another account at that issuer.
local owner = redis.call('GET', KEYS[1])
if owner then return {1, owner} end
local other = redis.call('GET', KEYS[2])
if other and other ~= ARGV[2] then return {2, ''} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return {1, ARGV[1]}
