#!/bin/sh
# Starts one Sentinel, monitoring the primary its peers name (or REDIS_INITIAL_PRIMARY on the first start).
# Its configuration is regenerated at every start; the Sentinels rewrite it as they learn.
set -eu
me="$(hostname).flashsale-redis-sentinel"
primary=""
for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
  [ "${sentinel%:*}" != "$me" ] || continue
  primary=$(timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
    sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 1 || true)
  [ -z "$primary" ] || break
done
[ -n "$primary" ] || primary=$REDIS_INITIAL_PRIMARY
cat > /run/sentinel/sentinel.conf <<CONF
port 26379
dir /run/sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
sentinel monitor $REDIS_MASTER_NAME $primary 6379 $SENTINEL_QUORUM
sentinel down-after-milliseconds $REDIS_MASTER_NAME 5000
sentinel failover-timeout $REDIS_MASTER_NAME 30000
sentinel parallel-syncs $REDIS_MASTER_NAME 1
CONF
# With k8s/overlays/redis-tls: TLS only, to the clients, the other Sentinels and the Redis members (and
# REDIS_CLI_TLS above holds redis-cli's TLS options).
[ ! -f /etc/flashsale-redis/sentinel-tls.conf ] || cat /etc/flashsale-redis/sentinel-tls.conf >> /run/sentinel/sentinel.conf
echo "sentinel-start: $me monitors $primary"
exec redis-sentinel /run/sentinel/sentinel.conf
