#!/usr/bin/env bash
# Encryption in transit between the service and its stores, end to end on loopback ports:
#   - a throwaway CA issues the server certificates (SAN 127.0.0.1, localhost) and a client certificate;
#   - Redis speaks TLS only (`--port 0 --tls-port`, mutual TLS); hiredis 0.14 has no TLS, so the service
#     talks plain TCP to a loopback stunnel in client mode, which verifies Redis's certificate against the CA
#     and presents the client certificate (the sidecar of k8s/overlays/redis-tls);
#   - the MongoDB wire server (Tests/Fixtures/mongo_wire_server.py --tls-cert/--tls-key) accepts TLS only,
#     and MONGO_URI carries `tls=true&tlsCAFile=`: libmongoc negotiates TLS and verifies the server;
#   - negative checks: no plain text on either TLS port, stunnel and libmongoc refuse a server their CA did
#     not sign, Redis refuses a client without a certificate;
#   - orders placed through the service are confirmed (ledger over the tunnel) and reach MongoDB (over TLS);
#   - the Redis, Sentinel and stunnel files of k8s/overlays/redis-tls work as written (local paths and ports).
# One PASS/FAIL line per check; exits non-zero if any failed. Every process it starts is bounded in time
# and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

BIN=${FLASHSALE_BIN:-.build/debug/flashsale}
PY=.venv/bin/python
for tool in openssl stunnel redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || { echo "tls-check: $tool is not installed (scripts/bootstrap.sh)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "tls-check: no flashsale binary at $BIN: build first" >&2; exit 1; }
[ -x "$PY" ] || { echo "tls-check: $PY is missing (scripts/bootstrap.sh)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/flashsale-tls-check.XXXXXX)
PIDS=()
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then stop_process "$SERVER"; fi
  for pid in "${PIDS[@]}"; do stop_process "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
t0=$(date +%s)
FAILED=0
pass() { echo "tls-check: PASS $*"; }
fail() { echo "tls-check: FAIL $*"; FAILED=$((FAILED + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
# A fatal failure: later checks depend on it.
abort() { fail "$*"; echo "tls-check: FAIL ($FAILED failed, $(( $(date +%s) - t0 )) s)"; exit 1; }
# Background processes live at most this long even if this script is killed without running its trap.
LIFETIME=150

wait_tcp() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# 1. Certificates: a CA, a server certificate (127.0.0.1, localhost), a client certificate for the tunnel,
# and an unrelated CA for the negative checks. EC P-256, valid one day.
PKI=$WORK/pki
mkdir -p "$PKI"
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$PKI/$1.key" -out "$PKI/$1.pem" 2>/dev/null
}
make_cert() {  # name CN extendedKeyUsage [subjectAltName]
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$3"
    [ -z "${4:-}" ] || echo "subjectAltName=$4"
  } > "$PKI/$1.ext"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 1 \
    -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}
make_ca ca "FlashSale test CA" && make_ca other-ca "Unrelated CA" \
  && make_cert server 127.0.0.1 serverAuth "IP:127.0.0.1,DNS:localhost" \
  && make_cert client flashsale-api clientAuth \
  || abort "certificates: openssl could not create the CA and certificates"
chmod 600 "$PKI"/*.key
verify_certs() { openssl verify -CAfile "$PKI/ca.pem" "$PKI/server.pem" "$PKI/client.pem" >/dev/null; }
check "certificates: server certificate (SAN 127.0.0.1, localhost) and client certificate verify against the throwaway CA" verify_certs

# 2. Redis over TLS only, mutual TLS.
REDIS_TLS_PORT=$(free_port)
mkdir -p "$WORK/redis"
timeout "$LIFETIME" redis-server --port 0 --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
  --tls-cert-file "$PKI/server.pem" --tls-key-file "$PKI/server.key" --tls-ca-cert-file "$PKI/ca.pem" \
  --tls-auth-clients yes --tls-protocols "TLSv1.2 TLSv1.3" \
  --dir "$WORK/redis" --save "" --appendonly yes --appendfsync always --logfile "$WORK/redis/redis.log" &
PIDS+=($!)
wait_tcp "$REDIS_TLS_PORT" || abort "redis: redis-server did not listen on its TLS port"
tls_cli=(redis-cli -h 127.0.0.1 -p "$REDIS_TLS_PORT" --tls --cacert "$PKI/ca.pem")
check "redis: PING over TLS with the client certificate answers PONG" \
  test "$(timeout 5 "${tls_cli[@]}" --cert "$PKI/client.pem" --key "$PKI/client.key" ping 2>&1)" = PONG
check "redis: no plain-text port (port 0; the only listener is the TLS port)" \
  test "$(timeout 5 "${tls_cli[@]}" --cert "$PKI/client.pem" --key "$PKI/client.key" --raw config get port 2>&1 | tail -1)" = 0
plain=$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_TLS_PORT" ping 2>&1 || true)
check "redis: PING in plain text to the TLS port is refused (got: ${plain//$'\n'/ })" test "$plain" != PONG
nocert=$(timeout 5 "${tls_cli[@]}" ping 2>&1 || true)
check "redis: TLS without a client certificate is refused (got: ${nocert//$'\n'/ })" test "$nocert" != PONG

# The tunnel: plain TCP on a loopback port, TLS to Redis, Redis's certificate verified against the CA
# (chain and IP address), the client certificate presented.
start_stunnel() {  # name accept-port CA-file
  cat > "$WORK/stunnel-$1.conf" <<CONF
foreground = yes
pid =
debug = notice
output = $WORK/stunnel-$1.log
[redis]
client = yes
accept = 127.0.0.1:$2
connect = 127.0.0.1:$REDIS_TLS_PORT
sslVersionMin = TLSv1.2
verifyChain = yes
CAfile = $3
checkIP = 127.0.0.1
cert = $PKI/client.pem
key = $PKI/client.key
CONF
  timeout "$LIFETIME" stunnel "$WORK/stunnel-$1.conf" >>"$WORK/stunnel-$1.log" 2>&1 &
  PIDS+=($!)
  wait_tcp "$2"
}
TUNNEL_PORT=$(free_port)
start_stunnel ok "$TUNNEL_PORT" "$PKI/ca.pem" || abort "redis: stunnel did not listen (see its log)"
check "redis: PING through the stunnel client tunnel (plain loopback port -> verified TLS) answers PONG" \
  test "$(timeout 5 redis-cli -h 127.0.0.1 -p "$TUNNEL_PORT" ping 2>&1)" = PONG
BAD_TUNNEL_PORT=$(free_port)
start_stunnel other-ca "$BAD_TUNNEL_PORT" "$PKI/other-ca.pem" || abort "redis: the second stunnel did not listen"
badtunnel=$(timeout 5 redis-cli -h 127.0.0.1 -p "$BAD_TUNNEL_PORT" ping 2>&1 || true)
check "redis: a tunnel trusting another CA refuses the Redis server (got: ${badtunnel//$'\n'/ }; stunnel: $(grep -o 'certificate verify failed\|CERT_CHAIN_FAILED\|unable to get local issuer certificate' "$WORK/stunnel-other-ca.log" | head -1))" \
  test "$badtunnel" != PONG -a -n "$(grep -l 'certificate verify failed\|unable to get local issuer certificate\|CERT_CHAIN' "$WORK/stunnel-other-ca.log")"

# 3. The MongoDB wire server, TLS only.
MONGO_PORT=$(free_port)
MONGO_CONTROL=$(free_port)
timeout "$LIFETIME" "$PY" Tests/Fixtures/mongo_wire_server.py --port "$MONGO_PORT" --control-port "$MONGO_CONTROL" \
  --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" 2>"$WORK/mongo.log" &
PIDS+=($!)
mongo_op() {  # one control operation (JSON) -> its JSON reply on stdout
  "$PY" - "$MONGO_CONTROL" "$1" <<'PYEOF'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as connection:
    connection.sendall(sys.argv[2].encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(1 << 20)
        if not chunk:
            break
        data += chunk
print(data.decode().strip())
PYEOF
}
for _ in $(seq 1 100); do
  [ "$(mongo_op '{"op":"ping"}' 2>/dev/null)" = '{"ok": true}' ] && break
  sleep 0.1
done
[ "$(mongo_op '{"op":"ping"}' 2>/dev/null)" = '{"ok": true}' ] || abort "mongo: the wire server did not start ($(tail -3 "$WORK/mongo.log"))"
handshake=$(timeout 5 openssl s_client -connect "127.0.0.1:$MONGO_PORT" -CAfile "$PKI/ca.pem" -verify_ip 127.0.0.1 \
  -verify_return_error </dev/null 2>&1 || true)
check "mongo: the wire port negotiates TLS and its certificate verifies against the CA ($(grep -o 'Protocol *: *TLS[^ ]*\|New, TLS[^,]*' <<<"$handshake" | head -1))" \
  grep -q 'Verify return code: 0 (ok)' <<<"$handshake"
# A plain-text hello (OP_MSG) on the TLS port gets no MongoDB reply.
plain_reply=$("$PY" - "$MONGO_PORT" <<'PYEOF'
import socket, struct, sys
import bson
body = struct.pack("<I", 0) + b"\x00" + bson.encode({"hello": 1, "$db": "admin"})
message = struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3) as connection:
    connection.sendall(message)
    try:
        data = connection.recv(1 << 16)
    except OSError as error:
        data = b""
        print(f"error {error.__class__.__name__}")
reply = "none"
if len(data) >= 16 and struct.unpack("<i", data[12:16])[0] == 2013:
    reply = "OP_MSG reply"
elif data:
    reply = f"{len(data)} bytes that are not a MongoDB reply"
print(reply)
PYEOF
)
check "mongo: a plain-text hello on the TLS port gets no MongoDB reply (got: ${plain_reply//$'\n'/ })" \
  test "$(tail -1 <<<"$plain_reply")" != "OP_MSG reply"

# 4. The service. Each phase has its own instance; the ledger (through the tunnel) is shared.
FLASHSALE_JWT_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
FLASHSALE_DATA_KEY=$(head -c 32 /dev/urandom | base64)
export FLASHSALE_JWT_SECRET FLASHSALE_DATA_KEY
export FLASHSALE_SHUTDOWN_DELAY_SECONDS=0
export FLASHSALE_RATE_LIMIT_CUSTOMER=0 FLASHSALE_RATE_LIMIT_ADDRESS=0 FLASHSALE_LOG_FORMAT=json FLASHSALE_LOG_LEVEL=info
HTTP_PORT=$(free_port)
start_service() {  # name MONGO_URI
  FLASHSALE_HOST=127.0.0.1 FLASHSALE_PORT=$HTTP_PORT FLASHSALE_REDIS_URL="redis://127.0.0.1:$TUNNEL_PORT" \
    FLASHSALE_INSTANCE_ID="tls-check-$1" MONGO_URI=$2 \
    timeout "$LIFETIME" "$BIN" serve >"$WORK/serve-$1.log" 2>&1 &
  SERVER=$!
  wait_ready "http://127.0.0.1:$HTTP_PORT/readyz"
}
metric() {  # name{labels} -> value (0 when absent)
  curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}
ADMIN=$("$BIN" token --sub tls-check-admin --admin)
SALE=tls-check
ORDER_IDS=()
STATUSES=
place_orders() {  # customers... -> STATUSES (the HTTP statuses), ORDER_IDS += the confirmed orders' ids
  local token body id
  STATUSES=
  for customer in "$@"; do
    token=$("$BIN" token --sub "$customer")
    body=$(curl -s -w '\n%{http_code}' -X POST "http://127.0.0.1:$HTTP_PORT/sales/$SALE/orders" \
      -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      -d '{"quantity":1,"delivery":{"name":"Ada Lovelace","phone":"5550100","address":"1 Main St"}}')
    STATUSES+="$(tail -1 <<<"$body") "
    id=$(head -1 <<<"$body" | "$PY" -c 'import json, sys
try: print(json.load(sys.stdin).get("orderId", ""))
except Exception: pass')
    [ -z "$id" ] || ORDER_IDS+=("$id")
  done
  STATUSES=${STATUSES% }
}

# 4a. libmongoc told to trust another CA: the orders are confirmed (the ledger does not need MongoDB) but
# no TLS session to MongoDB is accepted, so the outbox writes nothing and reports failures.
BAD_URI="mongodb://127.0.0.1:$MONGO_PORT/flashsale?tls=true&tlsCAFile=$PKI/other-ca.pem&serverSelectionTimeoutMS=1500"
start_service wrong-ca "$BAD_URI" || abort "service (wrong CA): flashsale serve did not become ready ($(tail -3 "$WORK/serve-wrong-ca.log"))"
# The sale's id is generated: an id the caller chooses is checked against MongoDB (a retired sale keeps its id),
# which this instance cannot reach.
SALE=$(curl -fs -X POST "http://127.0.0.1:$HTTP_PORT/admin/sales" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' \
  -d "{\"name\":\"TLS check\",\"stock\":10,\"startsAt\":\"$(date -u -d '-2 seconds' +%Y-%m-%dT%H:%M:%SZ)\",\"durationSeconds\":600,\"perCustomerLimit\":2}" \
  | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])') || abort "service: could not create the sale"
named=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$HTTP_PORT/admin/sales" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' \
  -d "{\"id\":\"tls-check-named\",\"name\":\"TLS check\",\"stock\":10,\"startsAt\":\"$(date -u -d '-2 seconds' +%Y-%m-%dT%H:%M:%SZ)\",\"durationSeconds\":600}")
check "service (MongoDB CA wrong): a sale id of the caller's choosing cannot be checked against MongoDB: 503 ($named)" test "$named" = 503
place_orders alice bob
check "service (MongoDB CA wrong): 2 orders through the Redis tunnel answer 201 ($STATUSES)" test "$STATUSES" = "201 201"
failures=0
for _ in $(seq 1 40); do
  failures=$(metric flashsale_outbox_consecutive_failures)
  [ "$failures" -lt 2 ] || break
  sleep 0.5
done
reason=$(grep -o 'certificate verify failed\|TLS handshake failed[^"]*\|No suitable servers found[^"]*' "$WORK/serve-wrong-ca.log" | head -1 || true)
check "service (MongoDB CA wrong): libmongoc refuses the unverified server, the outbox writes nothing (consecutive failures $failures, written $(metric 'flashsale_outbox_written_total{kind="orders"}'); ${reason:-no TLS error in the log})" \
  test "$failures" -ge 2 -a "$(metric 'flashsale_outbox_written_total{kind="orders"}')" = 0
documents=$(mongo_op '{"op":"documents","collection":"orders"}' | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)["documents"]))')
check "service (MongoDB CA wrong): the wire server holds no order ($documents)" test "$documents" = 0
stop_process "$SERVER"; SERVER=

# 4b. The right CA: the outbox catches up (the two orders above) and new orders follow, all over TLS.
GOOD_URI="mongodb://127.0.0.1:$MONGO_PORT/flashsale?tls=true&tlsCAFile=$PKI/ca.pem"
start_service ok "$GOOD_URI" || abort "service: flashsale serve did not become ready ($(tail -3 "$WORK/serve-ok.log"))"
place_orders carol dave erin frank
check "service: 4 more orders as different customers answer 201 ($STATUSES)" test "$STATUSES" = "201 201 201 201"
# API.md: /stock reflects the ledger within 100 ms (an instance refreshes a view older than 50 ms), so read it
# once that bound has passed since the last order's 201, not at once.
sleep 0.15
stock=$(curl -fs "http://127.0.0.1:$HTTP_PORT/sales/$SALE/stock" -H "Authorization: Bearer $ADMIN" || true)
sold=$("$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["sold"], d["available"])' "$stock" 2>/dev/null || echo "? ?")
check "service: GET /sales/$SALE/stock says 6 sold, 4 available ($stock)" test "$sold" = "6 4"
arrived=0
for _ in $(seq 1 60); do
  arrived=$(mongo_op '{"op":"documents","collection":"orders"}' | "$PY" -c 'import json, sys
ids = {str(d["_id"]) for d in json.load(sys.stdin)["documents"]}
print(sum(i in ids for i in sys.argv[1:]))' "${ORDER_IDS[@]}")
  [ "$arrived" -lt "${#ORDER_IDS[@]}" ] || break
  sleep 0.5
done
check "service: all ${#ORDER_IDS[@]} confirmed orders reached MongoDB over TLS ($arrived found by id; outbox written $(metric 'flashsale_outbox_written_total{kind="orders"}'), consecutive failures $(metric flashsale_outbox_consecutive_failures))" \
  test "${#ORDER_IDS[@]}" = 6 -a "$arrived" = 6
stop_process "$SERVER"; SERVER=
# The service's every ledger connection went through the tunnel: Redis saw only TLS clients.
tunnelled=$(grep -c 'connected remote server' "$WORK/stunnel-ok.log" || true)
check "redis: the service's connections went through the tunnel ($tunnelled TLS sessions opened by stunnel)" test "$tunnelled" -gt 1

# 5. The files of k8s/overlays/redis-tls, as they are (only the certificate paths and the ports are local):
# a primary and a replica with redis-tls.conf (replication over mutual TLS), a Sentinel with
# sentinel-tls.conf, and the sidecar's stunnel.conf with a certificate issued like the cluster's
# (wildcard names of the headless Services, which its checkHost lines must match).
OVERLAY=k8s/overlays/redis-tls
make_cert member flashsale-redis serverAuth,clientAuth \
  "DNS:*.flashsale-redis.flashsale.svc,DNS:*.flashsale-redis-sentinel.flashsale.svc" \
  || abort "overlay: openssl could not create the members' certificate"
for role in member client; do
  mkdir -p "$WORK/secret-$role"
  cp "$PKI/$role.pem" "$WORK/secret-$role/tls.crt"; cp "$PKI/$role.key" "$WORK/secret-$role/tls.key"
  cp "$PKI/ca.pem" "$WORK/secret-$role/ca.crt"
done
PRIMARY_PORT=$(free_port); REPLICA_PORT=$(free_port); SENTINEL_PORT=$(free_port)
member_conf() {  # port [replicaof-port]: redis-tls.conf appended, as redis-start.sh does
  mkdir -p "$WORK/member-$1"
  echo "bind 127.0.0.1"; echo "dir $WORK/member-$1"; echo 'save ""'
  [ -z "${2:-}" ] || echo "replicaof 127.0.0.1 $2"
  sed -e "s|/etc/flashsale-redis-tls/|$WORK/secret-member/|" -e "s|^tls-port 6379$|tls-port $1|" "$OVERLAY/redis-tls.conf"
}
member_conf "$PRIMARY_PORT" > "$WORK/primary.conf"
member_conf "$REPLICA_PORT" "$PRIMARY_PORT" > "$WORK/replica.conf"
{
  echo "bind 127.0.0.1"; echo "dir $WORK"; echo "sentinel monitor flashsale 127.0.0.1 $PRIMARY_PORT 1"
  sed -e "s|/etc/flashsale-redis-tls/|$WORK/secret-member/|" -e "s|^tls-port 26379$|tls-port $SENTINEL_PORT|" "$OVERLAY/sentinel-tls.conf"
} > "$WORK/sentinel.conf"
timeout "$LIFETIME" redis-server "$WORK/primary.conf" > "$WORK/primary.log" 2>&1 &
PIDS+=($!)
timeout "$LIFETIME" redis-server "$WORK/replica.conf" > "$WORK/replica.log" 2>&1 &
PIDS+=($!)
timeout "$LIFETIME" redis-server "$WORK/sentinel.conf" --sentinel > "$WORK/sentinel.log" 2>&1 &
PIDS+=($!)
SIDECAR_REDIS_PORT=$(free_port); SIDECAR_SENTINEL_PORT=$(free_port)
sed -e "s|/etc/flashsale-redis-tls/|$WORK/secret-client/|" \
  -e "s|^accept = 127.0.0.10:6379$|accept = 127.0.0.10:$SIDECAR_REDIS_PORT|" \
  -e "s|^connect = flashsale-redis-0.flashsale-redis.flashsale.svc:6379$|connect = 127.0.0.1:$PRIMARY_PORT|" \
  -e "s|^accept = 127.0.0.1:26379$|accept = 127.0.0.1:$SIDECAR_SENTINEL_PORT|" \
  -e "s|^connect = flashsale-redis-sentinel-0.flashsale-redis-sentinel.flashsale.svc:26379$|connect = 127.0.0.1:$SENTINEL_PORT|" \
  -e '/^\[redis-[12]\]$/,/^checkHost/d' -e '/^\[sentinel-[12]\]$/,/^checkHost/d' \
  "$OVERLAY/stunnel.conf" > "$WORK/sidecar.conf"
timeout "$LIFETIME" stunnel "$WORK/sidecar.conf" >> "$WORK/sidecar.log" 2>&1 &
PIDS+=($!)
wait_tcp "$SIDECAR_SENTINEL_PORT" || abort "overlay: the sidecar's stunnel did not listen ($(tail -n 3 "$WORK/sidecar.log"))"
member_cli=(redis-cli -h 127.0.0.1 --tls --cacert "$WORK/secret-member/ca.crt" --cert "$WORK/secret-member/tls.crt" --key "$WORK/secret-member/tls.key")
link=; sentinel_view=
for _ in $(seq 1 100); do
  link=$(timeout 5 "${member_cli[@]}" -p "$REPLICA_PORT" info replication 2>/dev/null | tr -d '\r' | grep '^master_link_status:' || true)
  sentinel_view=$(timeout 5 redis-cli -h 127.0.0.1 -p "$SIDECAR_SENTINEL_PORT" sentinel master flashsale 2>/dev/null \
    | awk 'prev == "flags" { f = $0 } prev == "num-slaves" { n = $0 } { prev = $0 } END { print f, n }' || true)
  [ "$link" != master_link_status:up ] || [ "$sentinel_view" != "master 1" ] || break
  sleep 0.2
done
check "overlay: redis-tls.conf: the replica follows the primary over mutual TLS ($link)" test "$link" = master_link_status:up
check "overlay: the sidecar's PING through 127.0.0.10 to the primary (checkHost flashsale-redis-0.flashsale-redis.flashsale.svc) answers PONG" \
  test "$(timeout 5 redis-cli -h 127.0.0.10 -p "$SIDECAR_REDIS_PORT" ping 2>&1)" = PONG
check "overlay: sentinel-tls.conf: the Sentinel, asked through the sidecar, monitors the primary and its replica over TLS (flags, replicas: $sentinel_view)" \
  test "$sentinel_view" = "master 1"
plain=$(timeout 5 redis-cli -h 127.0.0.1 -p "$SENTINEL_PORT" ping 2>&1 || true)
check "overlay: the Sentinel refuses plain text (got: ${plain//$'\n'/ })" test "$plain" != PONG

if [ "$FAILED" -eq 0 ]; then
  echo "tls-check: PASS ($(( $(date +%s) - t0 )) s)"
else
  echo "tls-check: FAIL ($FAILED failed, $(( $(date +%s) - t0 )) s)"
  exit 1
fi
