# Shared by the scripts that start their own servers. Source it; it defines:
#   free_port                 prints a free TCP port on 127.0.0.1
#   start_test_redis DIR      starts redis-server (AOF, appendfsync always) on $REDIS_PORT with data in DIR
#   wait_ready URL            waits up to 30 s for URL to answer 2xx
#   stop_process PID          SIGTERM, then SIGKILL after 15 s
#   stop_servers              stops $SERVER and the redis on $REDIS_PORT (for trap ... EXIT)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_test_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$1" --save "" --appendonly yes --appendfsync always \
    --daemonize yes --pidfile "$1/redis.pid" --logfile "$1/redis.log"
}

wait_ready() {
  for _ in $(seq 1 150); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# Stops a process with SIGTERM and waits at most 15 s before SIGKILL.
stop_process() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

stop_servers() {
  if [ -n "${SERVER:-}" ]; then stop_process "$SERVER"; fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}
