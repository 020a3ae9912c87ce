-- wrk script: POST pre-encoded bodies in turn, and print the run's figures as one JSON line.
-- Usage: wrk ... -s bodies.lua URL -- <folder> <count> <content-type>
-- The bodies are files <folder>/1.body .. <count>.body; each request is formatted once, in init.
local requests = {}
local index = 0

init = function(args)
  local folder, count, content_type = args[1], tonumber(args[2]), args[3]
  for i = 1, count do
    local file = assert(io.open(folder .. "/" .. i .. ".body", "rb"))
    local body = file:read("*a")
    file:close()
    requests[i] = wrk.format("POST", nil, {["Content-Type"] = content_type}, body)
  end
  index = math.random(0, count - 1)
end

request = function()
  index = index % #requests + 1
  return requests[index]
end

done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, "status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
