-- wrk script: every request carries one of the tokens listed in a file (one a line), picked at
-- random (ORDER=random, the default) or in turn (ORDER=cycle).
--   wrk -s benches/load/rotate.lua http://127.0.0.1:PORT/api/cases -- tokens.txt
local tokens = {}
local n = 0
local i = 0
local cycle = os.getenv("ORDER") == "cycle"

function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    tokens[n] = "Bearer " .. line
  end
  math.randomseed(os.time())
end

function request()
  local k
  if cycle then
    i = i % n + 1
    k = i
  else
    k = math.random(n)
  end
  return wrk.format("GET", nil, { ["Authorization"] = tokens[k] })
end
