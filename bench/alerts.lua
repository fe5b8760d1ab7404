-- wrk script: every request is a distinct valid alert (a unique "id"), so none is a duplicate.
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
    '{"secret":"%s","algoId":"581628185981813760","action":"add","amount":"%d.5","id":"%s-%d-%d","ticker":"BTCUSDT.P"}',
    secret, counter % 1000 + 1, nonce, tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "text/plain"}, body)
end
