#!/bin/sh
# Creates the ledger's Redis Cluster once (the flashsale-redis-cluster-create Job; `make test` runs this same
# file on loopback, scripts/redis_cluster_check.py). REDIS_CLUSTER_NODES lists the pods (host:port): the first
# REDIS_CLUSTER_MASTERS are the masters, sharing the 16,384 slots evenly, and node i after them follows master
# i mod REDIS_CLUSTER_MASTERS. Idempotent:
#   - it waits (REDIS_CREATE_DEADLINE_SECONDS, 600) until every node answers;
#   - a cluster that exists (every slot assigned, state ok) is left as it is: exit 0;
#   - nodes without any slot are joined (CLUSTER MEET), given their slots and replicas (CLUSTER REPLICATE),
#     and it waits until every node says cluster_state:ok;
#   - a half-made cluster (some slots assigned, not all) is never touched: it exits non-zero and says so
#     (an operator looks at it: `redis-cli --cluster check`).
# Logs in as the ACL user `admin` (REDIS_ADMIN_PASSWORD).
set -eu
deadline=${REDIS_CREATE_DEADLINE_SECONDS:-600}
masters=${REDIS_CLUSTER_MASTERS:?REDIS_CLUSTER_MASTERS is the number of masters}
nodes=$(echo "${REDIS_CLUSTER_NODES:?REDIS_CLUSTER_NODES lists the nodes}" | tr ',' ' ')
count=$(echo $nodes | wc -w)
[ "$count" -ge "$masters" ] && [ "$masters" -ge 1 ] || { echo "cluster-create: $count nodes for $masters masters" >&2; exit 2; }
cli() {
  node=$1; shift
  if [ -n "${REDIS_ADMIN_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$REDIS_ADMIN_PASSWORD timeout 10 redis-cli ${REDIS_CLI_TLS:-} --user admin -h "${node%:*}" -p "${node##*:}" --raw "$@"
  else
    timeout 10 redis-cli ${REDIS_CLI_TLS:-} -h "${node%:*}" -p "${node##*:}" --raw "$@"
  fi
}
info() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2:\(.*\)/\1/p"; }
waited() { [ $(( $(date +%s) - started )) -lt "$deadline" ] || { echo "cluster-create: $1 within ${deadline} s" >&2; exit 1; }; sleep 1; }
nth() { echo $nodes | cut -d' ' -f"$1"; }

started=$(date +%s)
for node in $nodes; do
  until [ "$(cli "$node" ping 2>/dev/null)" = PONG ]; do waited "$node did not answer"; done
done
first=$(nth 1)
if [ "$(info "$first" cluster_slots_assigned)" = 16384 ] && [ "$(info "$first" cluster_state)" = ok ]; then
  echo "cluster-create: the cluster exists ($(info "$first" cluster_known_nodes) nodes, state ok): nothing to do"
  exit 0
fi
for node in $nodes; do
  assigned=$(info "$node" cluster_slots_assigned)
  if [ "${assigned:-0}" != 0 ]; then
    echo "cluster-create: $node already sees $assigned slots assigned, but not a whole cluster: not touching it (redis-cli --cluster check $node)" >&2
    exit 1
  fi
done

# Join: CLUSTER MEET takes an address, not a name.
for node in $nodes; do
  [ "$node" != "$first" ] || continue
  address=$(getent hosts "${node%:*}" | awk '{ print $1; exit }')
  [ -n "$address" ] || { echo "cluster-create: ${node%:*} does not resolve" >&2; exit 1; }
  cli "$first" cluster meet "$address" "${node##*:}" >/dev/null
done
share=$((16384 / masters))
i=1
while [ "$i" -le "$masters" ]; do
  start=$(( (i - 1) * share ))
  end=$(( i == masters ? 16383 : i * share - 1 ))
  cli "$(nth "$i")" cluster addslotsrange "$start" "$end" >/dev/null
  i=$((i + 1))
done
# A replica can follow its master once it knows it (the MEET has spread).
i=$((masters + 1))
while [ "$i" -le "$count" ]; do
  node=$(nth "$i")
  master=$(nth $(( (i - masters - 1) % masters + 1 )))
  id=$(cli "$master" cluster myid)
  until [ "$(cli "$node" cluster replicate "$id" 2>/dev/null)" = OK ]; do waited "$node could not follow $master"; done
  echo "cluster-create: $node follows $master"
  i=$((i + 1))
done
for node in $nodes; do
  until [ "$(info "$node" cluster_state)" = ok ] && [ "$(info "$node" cluster_known_nodes)" = "$count" ]; do
    waited "$node did not see the whole cluster"
  done
done
echo "cluster-create: created: $masters masters, $((count - masters)) replicas, every node says cluster_state:ok"
