-- wrk script: every request is a distinct valid alert (a unique "id"), so none is a duplicate, spread over 50
-- bots (one bot's alerts go one at a time, in order; different bots side by side).
-- Arguments after "--": the webhook secret and a nonce unique to this run.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  secret = args[1]
  nonce = args[2]
  counter = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"secret":"%s","algoId":"5816281859818%05d","action":"add","amount":"%d.5","id":"%s-%d-%d","ticker":"BTCUSDT.P"}',
    secret, (tid * 7 + counter) % 50, counter % 1000 + 1, nonce, tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "text/plain"}, body)
end
