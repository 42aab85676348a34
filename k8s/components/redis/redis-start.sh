#!/bin/sh
# Starts one Redis of the set: as a replica of whatever primary the Sentinels name, or, on the very first
# start (no Sentinel knows a primary yet), as the primary if this is REDIS_INITIAL_PRIMARY.
set -eu
me="$(hostname).flashsale-redis"
conf=/run/redis/redis.conf
cp /etc/flashsale-redis/redis.conf "$conf"
# With k8s/overlays/redis-tls: TLS only (its redis-tls.conf), and REDIS_CLI_TLS holds redis-cli's TLS options.
[ ! -f /etc/flashsale-redis/redis-tls.conf ] || cat /etc/flashsale-redis/redis-tls.conf >> "$conf"
echo "replica-announce-ip $me" >> "$conf"
primary=""
for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
  primary=$(timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
    sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 1 || true)
  [ -z "$primary" ] || break
done
[ -n "$primary" ] || primary=$REDIS_INITIAL_PRIMARY
if [ "$primary" != "$me" ]; then
  echo "replicaof $primary 6379" >> "$conf"
  echo "redis-start: $me starts as a replica of $primary"
else
  echo "redis-start: $me starts as the primary"
fi
exec redis-server "$conf"
