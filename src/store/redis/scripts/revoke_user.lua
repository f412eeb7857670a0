-- Delete every member of a user's index (sessions or devices) but ARGV[2]. Every key of the
-- user shares the user's hash tag, so this stays in one slot.
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[2] then
    n = n + redis.call('DEL', ARGV[1] .. id)
    redis.call('SREM', KEYS[1], id)
  end
end
return n
