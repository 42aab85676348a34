#!/bin/sh
# Starts one Redis of the set (the pod's container command; `make test` runs this same file on loopback,
# scripts/redis_ha_check.py). Which role it starts in:
#   1. the primary the Sentinels name (they persist what they learn: after a failover they name the promoted
#      member, also across a restart of the whole set);
#   2. else a member that answers ROLE master (asked with the replication user);
#   3. else, only on the very first start of the set (this member holds no data yet), REDIS_INITIAL_PRIMARY;
#   4. else it waits, asking again, for REDIS_START_DEADLINE_SECONDS, then exits non-zero (the kubelet
#      restarts it): a member with data never crowns itself, which could bring back a stale primary and lose
#      acknowledged writes. REDIS_RECOVER_AS_PRIMARY=<pod name> overrides this once, when every Sentinel's
#      state is lost (docs/alerts.md, FlashSaleRedisNoPrimary).
# ACL (when REDIS_SERVICE_PASSWORD is set): `flashsale` for the service (the ledger's commands, keys fs:*),
# `replica` for replication, `sentinel` for the Sentinels (and redis-prestop.sh's hand-over), `exporter` for
# redis_exporter (INFO and the like, REDIS_EXPORTER_PASSWORD); the default user is off, so a client that has
# not logged in is answered NOAUTH, PING included (the probes' redis-cli still exits 0 on that answer).
# maxmemory: REDIS_MAXMEMORY, else 70% of the container's memory limit (the rest covers the AOF rewrite's
# copy-on-write and the replication buffers), with noeviction: writes are refused, never keys evicted.
set -eu
files=${REDIS_FILES_DIR:-/etc/flashsale-redis}
run=${REDIS_RUN_DIR:-/run/redis}
data=${REDIS_DATA_DIR:-/data}
pod=${POD_NAME:-$(hostname)}
me="$pod.${REDIS_SERVICE_NAME:-flashsale-redis}"
deadline=${REDIS_START_DEADLINE_SECONDS:-120}
conf=$run/redis.conf
# redis.conf's own `dir` is left out: Redis changes into a `dir` as it reads the line, so it would fail where
# that directory does not exist even though `dir $data` follows.
sed '/^dir /d' "$files/redis.conf" > "$conf"
echo "dir $data" >> "$conf"
[ -z "${REDIS_BIND:-}" ] || echo "bind $REDIS_BIND" >> "$conf"
# With k8s/overlays/redis-tls: TLS only (its redis-tls.conf), and REDIS_CLI_TLS holds redis-cli's TLS options.
[ ! -f "$files/redis-tls.conf" ] || cat "$files/redis-tls.conf" >> "$conf"
echo "replica-announce-ip $me" >> "$conf"

maxmemory=${REDIS_MAXMEMORY:-}
if [ -z "$maxmemory" ] && [ -r /sys/fs/cgroup/memory.max ]; then
  limit=$(cat /sys/fs/cgroup/memory.max)
  [ "$limit" = max ] || maxmemory=$((limit / 10 * 7))
fi
[ -z "$maxmemory" ] || echo "maxmemory $maxmemory" >> "$conf"

sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
if [ -n "${REDIS_SERVICE_PASSWORD:-}" ]; then
  : "${REDIS_REPLICATION_PASSWORD:?REDIS_REPLICATION_PASSWORD must be set with REDIS_SERVICE_PASSWORD}"
  : "${REDIS_SENTINEL_PASSWORD:?REDIS_SENTINEL_PASSWORD must be set with REDIS_SERVICE_PASSWORD}"
  # The default user is off (nobody can use it) yet holds every permission: Redis (7.2 and older) replays the
  # AOF as the default user and checks each MULTI/EXEC against its ACL (redis/redis#14541), and the ledger's
  # scripts reach the AOF as MULTI/EXEC. A default user restricted to PING made a restarted member drop them
  # all, silently: the sales and orders written since the last AOF rewrite were lost.
  cat >> "$conf" <<CONF
user default off ~* &* +@all
user flashsale on #$(sha "$REDIS_SERVICE_PASSWORD") ~fs:* &* -@all +@read +@write +@scripting +@pubsub +@connection +@transaction +time +wait +role +info +config|get -script|kill -script|flush -function -flushall -flushdb -keys
user replica on #$(sha "$REDIS_REPLICATION_PASSWORD") -@all +psync +replconf +ping +role
user exporter on #$(sha "${REDIS_EXPORTER_PASSWORD:-$REDIS_SENTINEL_PASSWORD}") -@all +info +ping +client|list +slowlog +latency +select
user sentinel on #$(sha "$REDIS_SENTINEL_PASSWORD") &* -@all +multi +slaveof +replicaof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill +client|pause +client|unpause +wait
masteruser replica
masterauth "$REDIS_REPLICATION_PASSWORD"
CONF
fi

# redis-cli against a Sentinel (their own password, REDIS_SENTINEL_AUTH_PASSWORD) or a member (the replica user).
ask_sentinel() {
  REDISCLI_AUTH=${REDIS_SENTINEL_AUTH_PASSWORD:-} timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${1%:*}" -p "${1##*:}" --raw \
    sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 1 | grep -v -e '^ERR' -e '^NOAUTH' -e '^WRONGPASS' || true
}
ask_member() {
  if [ -n "${REDIS_SERVICE_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$REDIS_REPLICATION_PASSWORD timeout 3 redis-cli ${REDIS_CLI_TLS:-} --user replica -h "$1" -p 6379 --raw role 2>/dev/null | head -n 1 || true
  else
    timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "$1" -p 6379 --raw role 2>/dev/null | head -n 1 || true
  fi
}
has_data() { [ -n "$(ls -A "$data/appendonlydir" 2>/dev/null)" ] || [ -f "$data/dump.rdb" ]; }

primary=""
started=$(date +%s)
while :; do
  for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
    primary=$(ask_sentinel "$sentinel")
    [ -z "$primary" ] || break
  done
  if [ -z "$primary" ]; then
    for member in $(echo "${REDIS_MEMBERS:-}" | tr ',' ' '); do
      [ "$member" != "$me" ] || continue
      if [ "$(ask_member "$member")" = master ]; then primary=$member; break; fi
    done
  fi
  [ -z "$primary" ] || break
  if [ "${REDIS_RECOVER_AS_PRIMARY:-}" = "$pod" ]; then
    primary=$me; echo "redis-start: REDIS_RECOVER_AS_PRIMARY names $pod: starting as the primary on its own data"; break
  fi
  if [ "$me" = "$REDIS_INITIAL_PRIMARY" ] && ! has_data; then
    primary=$me; echo "redis-start: no Sentinel or member names a primary and $me holds no data: the set's first start"; break
  fi
  if [ $(( $(date +%s) - started )) -ge "$deadline" ]; then
    echo "redis-start: no Sentinel or member named a primary within ${deadline} s and $me holds data (or is not the initial primary): refusing to crown itself" >&2
    exit 1
  fi
  echo "redis-start: no Sentinel or member names a primary yet; asking again"
  sleep 2
done
if [ "$primary" != "$me" ]; then
  echo "replicaof $primary 6379" >> "$conf"
  echo "redis-start: $me starts as a replica of $primary"
else
  echo "redis-start: $me starts as the primary"
fi
exec redis-server "$conf"
