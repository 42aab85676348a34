#!/bin/sh
# Starts one Sentinel (the pod's container command; `make test` runs this same file on loopback,
# scripts/redis_ha_check.py). Its state lives on a PersistentVolume (SENTINEL_DATA_DIR): the configuration the
# Sentinel rewrites as it learns (the current primary, its epoch, the other Sentinels and replicas) survives a
# restart, so a cold restart of the whole set follows the promoted primary instead of REDIS_INITIAL_PRIMARY.
# Only the very first start writes a configuration: monitoring the primary its peers name, or
# REDIS_INITIAL_PRIMARY when none does. Credentials are (re)applied at every start.
set -eu
files=${REDIS_FILES_DIR:-/etc/flashsale-redis}
data=${SENTINEL_DATA_DIR:-/data}
pod=${POD_NAME:-$(hostname)}
me="$pod.${SENTINEL_SERVICE_NAME:-flashsale-redis-sentinel}"
conf=$data/sentinel.conf
if [ ! -s "$conf" ]; then
  primary=""
  for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
    [ "${sentinel%:*}" != "$me" ] || continue
    primary=$(REDISCLI_AUTH=${REDIS_SENTINEL_AUTH_PASSWORD:-} timeout 3 redis-cli ${REDIS_CLI_TLS:-} -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
      sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 1 | grep -v -e '^ERR' -e '^NOAUTH' -e '^WRONGPASS' || true)
    [ -z "$primary" ] || break
  done
  [ -n "$primary" ] || primary=$REDIS_INITIAL_PRIMARY
  cat > "$conf.new" <<CONF
port 26379
dir $data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
sentinel monitor $REDIS_MASTER_NAME $primary 6379 $SENTINEL_QUORUM
sentinel down-after-milliseconds $REDIS_MASTER_NAME ${SENTINEL_DOWN_AFTER_MS:-5000}
sentinel failover-timeout $REDIS_MASTER_NAME ${SENTINEL_FAILOVER_TIMEOUT_MS:-30000}
sentinel parallel-syncs $REDIS_MASTER_NAME 1
CONF
  mv "$conf.new" "$conf"
  echo "sentinel-start: $me monitors $primary (first start)"
else
  echo "sentinel-start: $me resumes from its saved state (primary $(sed -n "s/^sentinel monitor $REDIS_MASTER_NAME \([^ ]*\) .*/\1/p" "$conf"))"
fi
# Settings that follow the pod's environment, not what the Sentinel learned: replaced at every start. The
# Sentinel's CONFIG REWRITE saves requirepass also as `user default ... #<sha256>`, which Redis applies after
# requirepass: left in place, it would keep the old password after REDIS_SENTINEL_AUTH_PASSWORD changes.
sed -i -e '/^bind /d' -e '/^requirepass /d' -e '/^user default /d' -e '/^sentinel sentinel-pass /d' -e '/^sentinel sentinel-user /d' \
  -e "/^sentinel auth-user $REDIS_MASTER_NAME /d" -e "/^sentinel auth-pass $REDIS_MASTER_NAME /d" \
  -e '/^tls-/d' -e 's/^port 0$/port 26379/' "$conf"
[ -z "${SENTINEL_BIND:-}" ] || echo "bind $SENTINEL_BIND" >> "$conf"
if [ -n "${REDIS_SENTINEL_PASSWORD:-}" ]; then
  # The Sentinels' login to the Redis members (the `sentinel` ACL user of redis-start.sh).
  echo "sentinel auth-user $REDIS_MASTER_NAME sentinel" >> "$conf"
  echo "sentinel auth-pass $REDIS_MASTER_NAME \"$REDIS_SENTINEL_PASSWORD\"" >> "$conf"
fi
if [ -n "${REDIS_SENTINEL_AUTH_PASSWORD:-}" ]; then
  # Clients (the service, the start scripts) and the other Sentinels log in to this one with it.
  echo "requirepass \"$REDIS_SENTINEL_AUTH_PASSWORD\"" >> "$conf"
  echo "sentinel sentinel-pass \"$REDIS_SENTINEL_AUTH_PASSWORD\"" >> "$conf"
fi
# With k8s/overlays/redis-tls: TLS only, to the clients, the other Sentinels and the Redis members (and
# REDIS_CLI_TLS above holds redis-cli's TLS options).
[ ! -f "$files/sentinel-tls.conf" ] || grep -v "^#" "$files/sentinel-tls.conf" >> "$conf"
exec redis-sentinel "$conf"
