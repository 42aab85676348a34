#!/bin/sh
# preStop of a Redis member: a primary hands its role to a replica before it stops (SENTINEL FAILOVER, then it
# waits up to REDIS_HANDOVER_SECONDS for ROLE to say slave), so a planned restart (rolling update, node drain)
# costs a planned failover, not Sentinel's down-after-milliseconds of a primary that is gone. A replica, or a
# primary without a connected replica, stops at once.
# The primary takes no write from before the failover until it is a replica (CLIENT PAUSE WRITE, as the
# `sentinel` ACL user): a write it took after the promotion could be acknowledged (WAIT) by a replica that
# Sentinel had not reconfigured yet, and be lost when that replica resyncs from the promoted member. Once a
# Sentinel names the promoted member, it turns itself into its replica (Sentinel would only ~10 s later).
set -u
pod=${POD_NAME:-$(hostname)}
# This member as the Sentinels name it (host and port); REDIS_ADDRESS/REDIS_PORT only where that is not the pod's
# DNS name and 6379 (a test topology on one host).
port=${REDIS_PORT:-6379}
me="${REDIS_ADDRESS:-$pod.${REDIS_SERVICE_NAME:-flashsale-redis}} $port"
wait_for=${REDIS_HANDOVER_SECONDS:-20}
role() {
  if [ -n "${REDIS_SERVICE_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$REDIS_REPLICATION_PASSWORD timeout 3 redis-cli ${REDIS_CLI_TLS:-} --user replica -h "${REDIS_BIND:-127.0.0.1}" -p "$port" --raw role 2>/dev/null
  else
    timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${REDIS_BIND:-127.0.0.1}" -p "$port" --raw role 2>/dev/null
  fi
}
admin() {
  if [ -n "${REDIS_SERVICE_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$REDIS_SENTINEL_PASSWORD timeout 3 redis-cli ${REDIS_CLI_TLS:-} --user sentinel -h "${REDIS_BIND:-127.0.0.1}" -p "$port" --raw "$@" 2>/dev/null
  else
    timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${REDIS_BIND:-127.0.0.1}" -p "$port" --raw "$@" 2>/dev/null
  fi
}
named() {
  for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
    named=$(REDISCLI_AUTH=${REDIS_SENTINEL_AUTH_PASSWORD:-} timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
      sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 2 | tr '\n' ' ' | sed 's/ $//' | grep -v -e '^ERR' -e '^NOAUTH' -e '^WRONGPASS' || true)
    [ -z "$named" ] || { echo "$named"; return; }
  done
}
[ "$(role | head -n 1)" = master ] || exit 0
# ROLE of a primary: master, offset, then a (host, port, offset) line triple per connected replica.
[ "$(role | wc -l)" -ge 5 ] || { echo "redis-prestop: $pod is the primary without a connected replica: no hand-over"; exit 0; }
# Writes wait from here (at most the hand-over time, and no longer than this script); then every connected
# replica is given up to 2 s to hold them all, so the promoted one has every acknowledged write.
admin client pause $((wait_for * 1000)) write >/dev/null
trap 'admin client unpause >/dev/null' EXIT
admin wait $(( ($(role | wc -l) - 2) / 3 )) 2000 >/dev/null
for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
  answer=$(REDISCLI_AUTH=${REDIS_SENTINEL_AUTH_PASSWORD:-} timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${sentinel%:*}" -p "${sentinel##*:}" \
    sentinel failover "$REDIS_MASTER_NAME" 2>/dev/null || true)
  [ "$answer" != OK ] || break
done
echo "redis-prestop: $pod asked for a failover ($answer)"
# No Sentinel took it: the primary takes writes again until SIGTERM (then Sentinel fails over).
[ "$answer" = OK ] || admin client unpause >/dev/null
# Polled ten times a second: writes wait for as long as this takes, and commits give up after their timeout.
i=0
while [ $i -lt $((wait_for * 10)) ]; do
  [ "$(role | head -n 1)" = master ] || { echo "redis-prestop: $pod handed the primary role over"; exit 0; }
  primary=$(named)
  [ -z "$primary" ] || [ "$primary" = "$me" ] || admin replicaof $primary >/dev/null
  sleep 0.1; i=$((i + 1))
done
echo "redis-prestop: $pod is still the primary after ${wait_for} s; stopping anyway (Sentinel fails over)"
