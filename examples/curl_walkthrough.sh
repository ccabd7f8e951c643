#!/usr/bin/env bash
# The README's curl walk-through, runnable: starts tenancyd on a fresh data
# directory, creates a tenant, uses its key, hits its quota, takes a permit of
# a limit class, reads its stats and the metrics, and stops the server. Exits non-zero if any step does not
# answer as the README says (ctest runs it).
#
#   examples/curl_walkthrough.sh build/server/tenancyd
set -euo pipefail
tenancyd=${1:-build/server/tenancyd}
data=$(mktemp -d)
out=$(mktemp)
trap 'kill $pid 2>/dev/null && wait $pid; rm -rf "$data" "$out"' EXIT

export TENANCY_ADMIN_KEY=change-me
"$tenancyd" --data-dir "$data/db" --listen 127.0.0.1:0 > "$out" 2> "$data/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^tenancyd listening on //p' "$out")
echo "# tenancyd listening on $addr"
base="http://$addr"
admin=(-H "X-Admin-Key: $TENANCY_ADMIN_KEY")

step() { echo; echo "\$ $*"; }
expect() {  # expect <status> <curl args...>: prints the body, checks the status
  local want=$1; shift
  local got
  got=$(curl -s -o "$data/body" -w '%{http_code}' "$@")
  cat "$data/body"
  echo "  [HTTP $got]"
  [ "$got" = "$want" ] || { echo "expected HTTP $want, got $got" >&2; exit 1; }
}

step "create tenant acme with a 1 MB quota (the API key is shown once)"
created=$(curl -s -X POST "${admin[@]}" "$base/admin/tenants" \
  -d '{"tenant_id":"acme","quota_mb":1}')
echo "$created"
key=$(echo "$created" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
[ -n "$key" ] || exit 1
auth=(-H "Authorization: Bearer $key")

step "write and read a key with it"
expect 204 -X PUT "${auth[@]}" --data-binary 'hello' "$base/v1/kv/greeting"
expect 200 "${auth[@]}" "$base/v1/kv/greeting"

step "keys are percent-encoded bytes; scans list them in order"
expect 204 -X PUT "${auth[@]}" --data-binary 'x' "$base/v1/kv/users%2F42"
expect 200 "${auth[@]}" "$base/v1/kv?prefix=users%2F&limit=10"

step "another tenant's route with acme's key is 403"
expect 403 "${auth[@]}" "$base/t/other/v1/kv/greeting"

step "hit the quota: 600 KB fits, the next 600 KB does not (507, nothing written)"
head -c 600000 /dev/zero | tr '\0' 'a' > "$data/blob"
expect 204 -X PUT "${auth[@]}" --data-binary @"$data/blob" "$base/v1/kv/big1"
expect 507 -X PUT "${auth[@]}" --data-binary @"$data/blob" "$base/v1/kv/big2"
expect 404 "${auth[@]}" "$base/v1/kv/big2"

step "a permit of a limit class for a remote worker: give acme llm/student 1, take, renew, release"
expect 200 -X PUT "${admin[@]}" "$base/admin/tenants/acme" \
  -d '{"quota":{"storage_mb":1},"limits":{"llm":30,"llm/student":1}}'
taken=$(curl -s -X POST "${auth[@]}" "$base/v1/permits" \
  -d '{"class":"llm/student","lease_s":60,"wait_s":1}')
echo "$taken"
permit=$(echo "$taken" | sed -n 's/.*"permit":"\([^"]*\)".*/\1/p')
[ -n "$permit" ] || exit 1
expect 429 -X POST "${auth[@]}" "$base/v1/permits" -d '{"class":"llm/student","wait_s":0.2}'
expect 200 -X POST "${auth[@]}" "$base/v1/permits/$permit/renew" -d '{"lease_s":120}'
expect 204 -X DELETE "${auth[@]}" "$base/v1/permits/$permit"
expect 404 -X DELETE "${auth[@]}" "$base/v1/permits/$permit"

step "stats and metrics (admin key)"
expect 200 "${admin[@]}" "$base/admin/tenants/acme/stats"
curl -s "${admin[@]}" "$base/metrics" | grep -E '^tenancy_(storage_bytes|keys|quota_bytes|rejections_total|permits_granted_total)\{tenant="acme"' 

step "SIGTERM: finish requests in flight, flush, exit 0"
kill -TERM $pid
wait $pid
echo "exit $?"
pid=
