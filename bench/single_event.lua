-- wrk script: one event per POST /v1/events (the token comes from the TOKEN environment variable).
-- Raw content is hashed client-side already, as a careful agent would send it.
local token = os.getenv("TOKEN")
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"agent_id":"agent-%d","session_id":"sess-%d","client_seq":%d,"event_type":"tool_call","tool_name":"query_database","agent_role":"analyst","args":{"query_hash":"sha256:3c5cfa5fa70f8a356e882615c69357b77a77d03fb0c4a8563bc0f4792d5ef314","table":"orders","limit":100},"authorization":{"rbac_role":"analyst","allowed":true,"policy_matched":"analyst-read-orders"},"result":{"rows_returned":%d,"data_classification":"internal"},"duration_ms":45}', n % 40, n % 400, n, n % 500)
  return wrk.format("POST", "/v1/events", {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
