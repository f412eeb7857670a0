-- Delete every member of a user's index (sessions or devices) but ARGV[2]; returns the ids whose
-- record was deleted. Every key of the user shares the user's hash tag, so this stays in one slot.
local gone = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[2] then
    if redis.call('DEL', ARGV[1] .. id) == 1 then
      gone[#gone + 1] = id
    end
    redis.call('SREM', KEYS[1], id)
  end
end
return gone
