-- wrk script: posts pre-signed webhook bodies, one line each ("signature<TAB>topic<TAB>body"), every
-- request a different one (so dedupe does not short-cut them), and prints the figures as JSON.
local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  path = args[1]
  bodies, sigs, topics = {}, {}, {}
  for line in io.lines(args[2]) do
    local a = line:find("\t")
    local b = line:find("\t", a + 1)
    sigs[#sigs + 1] = line:sub(1, a - 1)
    topics[#topics + 1] = line:sub(a + 1, b - 1)
    bodies[#bodies + 1] = line:sub(b + 1)
  end
  step = tonumber(args[3] or "2")
  n = id - 1
end

function request()
  n = n + step
  local k = n % #bodies + 1
  return wrk.format("POST", path, {["X-WC-Webhook-Signature"] = sigs[k], ["X-WC-Webhook-Topic"] = topics[k],
                                   ["Content-Type"] = "application/json"}, bodies[k])
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('{"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
                         '"errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors, summary.errors.status))
end
