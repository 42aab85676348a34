#!/bin/sh
# Starts one node of the ledger's Redis Cluster (the pod's container command; `make test` runs this same file on
# loopback, scripts/redis_cluster_check.py). Which role it has is the cluster's business: a new node starts
# empty and cluster-create.sh (the Job) gives it slots or a master to follow; a restarted node reads its
# nodes.conf (on its volume) and rejoins as what the cluster says it is now.
# Pods get new addresses when they restart: every node announces its DNS name (cluster-announce-hostname), and
# before starting, this script rewrites the address of every node in nodes.conf that names a DNS name to the
# address the name resolves to now, so a cluster whose pods all restarted at once finds itself again.
# ACL (when REDIS_SERVICE_PASSWORD is set): `flashsale` for the service (the ledger's commands on fs:* keys, plus
# reading the slot map and ASKING), `replica` for replication, `exporter` for redis_exporter, `admin` for
# cluster-create.sh and an operator's resharding (every command); the default user is off.
# maxmemory: REDIS_MAXMEMORY, else 70% of the container's memory limit, with noeviction.
set -eu
files=${REDIS_FILES_DIR:-/etc/flashsale-redis}
run=${REDIS_RUN_DIR:-/run/redis}
data=${REDIS_DATA_DIR:-/data}
pod=${POD_NAME:-$(hostname)}
me="$pod.${REDIS_SERVICE_NAME:-flashsale-redis-cluster}"
conf=$run/redis.conf
sed '/^dir /d' "$files/redis.conf" > "$conf"
echo "dir $data" >> "$conf"
[ -z "${REDIS_BIND:-}" ] || echo "bind $REDIS_BIND" >> "$conf"
# The address the other nodes reach this one at (the pod's IP, from the downward API): what it announces on the
# cluster bus, whatever source address its own connections leave from.
[ -z "${REDIS_ANNOUNCE_IP:-}" ] || echo "cluster-announce-ip $REDIS_ANNOUNCE_IP" >> "$conf"
cat >> "$conf" <<CONF
cluster-enabled yes
cluster-config-file $data/nodes.conf
cluster-node-timeout ${REDIS_CLUSTER_NODE_TIMEOUT_MS:-5000}
cluster-announce-hostname $me
cluster-preferred-endpoint-type hostname
cluster-require-full-coverage yes
CONF

maxmemory=${REDIS_MAXMEMORY:-}
if [ -z "$maxmemory" ] && [ -r /sys/fs/cgroup/memory.max ]; then
  limit=$(cat /sys/fs/cgroup/memory.max)
  [ "$limit" = max ] || maxmemory=$((limit / 10 * 7))
fi
[ -z "$maxmemory" ] || echo "maxmemory $maxmemory" >> "$conf"

sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
if [ -n "${REDIS_SERVICE_PASSWORD:-}" ]; then
  : "${REDIS_REPLICATION_PASSWORD:?REDIS_REPLICATION_PASSWORD must be set with REDIS_SERVICE_PASSWORD}"
  : "${REDIS_ADMIN_PASSWORD:?REDIS_ADMIN_PASSWORD must be set with REDIS_SERVICE_PASSWORD}"
  # The default user is off yet holds every permission: Redis replays the AOF as the default user and checks
  # each MULTI/EXEC against its ACL (see k8s/components/redis/redis-start.sh).
  cat >> "$conf" <<CONF
user default off ~* &* +@all
user flashsale on #$(sha "$REDIS_SERVICE_PASSWORD") ~fs:* &* -@all +@read +@write +@scripting +@pubsub +@connection +@transaction +time +wait +role +info +config|get +cluster|slots +cluster|shards +cluster|info +cluster|myid +asking -script|kill -script|flush -function -flushall -flushdb -keys
user replica on #$(sha "$REDIS_REPLICATION_PASSWORD") -@all +psync +replconf +ping +role
user exporter on #$(sha "${REDIS_EXPORTER_PASSWORD:-$REDIS_ADMIN_PASSWORD}") -@all +info +ping +client|list +slowlog +latency +select +cluster|info
user admin on #$(sha "$REDIS_ADMIN_PASSWORD") ~* &* +@all
masteruser replica
masterauth "$REDIS_REPLICATION_PASSWORD"
CONF
fi

# Addresses of the nodes by their announced names, as they resolve now (the lines stay as they are when a
# name does not resolve yet: gossip corrects them once any peer reaches this node).
if [ -s "$data/nodes.conf" ]; then
  fresh=$run/nodes.conf
  : > "$fresh"
  while read -r id address rest; do
    case "$address" in
      *,*)
        host=${address##*,}
        ip=$(getent hosts "$host" 2>/dev/null | awk '{ print $1; exit }' || true)
        [ -z "$ip" ] || address="$ip:${address##*:}"
        ;;
    esac
    echo "$id $address $rest" >> "$fresh"
  done < "$data/nodes.conf"
  cp "$fresh" "$data/nodes.conf"
  echo "redis-cluster-start: $me rejoins the cluster with its nodes.conf (addresses resolved again)"
else
  echo "redis-cluster-start: $me starts as a new node (cluster-create.sh gives it its role)"
fi
exec redis-server "$conf"
