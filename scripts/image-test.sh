#!/usr/bin/env bash
# The image test (`make test`): builds the image with podman (scripts/image.sh), checks its configuration,
# exports its file system and runs the image's own entrypoint under chroot as the image's user against a
# local redis-server (loopback, AOF), checks /readyz answers 200 and that nothing was written to the root
# file system, reports the image size, and cleans up (image, temp dirs, processes). Bounded (~1 min).
# Podman cannot RUN containers on the build machines (crun refuses), hence chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
source scripts/lib.sh

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
if ! command -v podman >/dev/null; then
  echo "image-test: installing podman"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >/dev/null
fi
BINARY=.build/release/flashsale
if [ ! -x "$BINARY" ]; then
  echo "image-test: no release build; building it (about 8 minutes from scratch on 2 cores)"
  timeout 1800 swift build -c release --product flashsale
fi

IMAGE=localhost/flashsale:image-test-$$
WORK=$(mktemp -d /tmp/flashsale-image-test.XXXXXX)
ROOT=$WORK/rootfs
REDIS_PORT=$(free_port)
SERVER=
CID=
PROC_MOUNT=
cleanup() {
  if [ -n "$SERVER" ]; then stop_process "$SERVER"; fi
  # Unmount before anything is removed below the root file system.
  if [ -n "$PROC_MOUNT" ]; then umount "$PROC_MOUNT" 2>/dev/null || umount -l "$PROC_MOUNT" 2>/dev/null || true; fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  if [ -n "$CID" ]; then podman rm -f "$CID" >/dev/null 2>&1 || true; fi
  podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }

# 1. Build (staged in the temp dir, so `make image`'s .build/image is left alone).
IMAGE=$IMAGE IMAGE_STAGE_DIR=$WORK/stage timeout 300 scripts/image.sh
rm -rf "$WORK/stage"

# 2. The image's configuration.
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
healthcheck=$(podman image inspect --format '{{.Config.Healthcheck}}' "$IMAGE")
title=$(podman image inspect --format '{{index .Config.Labels "org.opencontainers.image.title"}}' "$IMAGE")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
[ "$entrypoint" = '["/usr/local/bin/flashsale","serve"]' ] || fail "entrypoint is $entrypoint"
[ "$healthcheck" = "<nil>" ] || [ -z "$healthcheck" ] || fail "the image has a HEALTHCHECK ($healthcheck)"
[ "$title" = flashsale ] || fail "OCI label org.opencontainers.image.title is '$title'"
uid=${user%%:*}; gid=${user#*:}; [ "$gid" != "$user" ] || gid=$uid
case "$uid" in ''|0|root|*[!0-9]*) fail "USER is '$user': expected a numeric non-root uid" ;; esac

# 3. Its file system.
mkdir -p "$ROOT"
CID=$(podman create "$IMAGE")
timeout 120 podman export "$CID" | tar -x -C "$ROOT"
podman rm "$CID" >/dev/null; CID=
for shell in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash bin/busybox; do
  [ ! -e "$ROOT/$shell" ] || fail "the image has a shell: /$shell"
done
grep -q "^[^:]*:x:$uid:$gid:" "$ROOT/etc/passwd" || fail "uid $uid is not in the image's /etc/passwd"
grep -q "^[^:]*:x:$gid:" "$ROOT/etc/group" || fail "gid $gid is not in the image's /etc/group"
[ -s "$ROOT/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA certificates"
[ -x "$ROOT/lib64/ld-linux-x86-64.so.2" ] || fail "no dynamic loader"
files=$(find "$ROOT" -type f | wc -l)

# 4. Run the image's entrypoint under chroot as the image's user, with the image's environment.
mkdir -p "$WORK/redis"
start_test_redis "$WORK/redis"
PORT=$(free_port)
mapfile -t image_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
mapfile -t command < <(podman image inspect --format '{{range .Config.Entrypoint}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
# A container runtime gives every container its own /proc; the Swift runtime reads it (without it the
# binary traps at start now and then), so the chroot gets one too, like the pod will.
mkdir -p "$ROOT/proc"
mount -t proc proc "$ROOT/proc" || fail "cannot mount /proc in the exported root file system"
PROC_MOUNT="$ROOT/proc"
touch "$WORK/before-run"; sleep 1
env -i "${image_env[@]}" FLASHSALE_HOST=127.0.0.1 FLASHSALE_PORT="$PORT" \
  FLASHSALE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  FLASHSALE_JWT_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  FLASHSALE_DATA_KEY="$(head -c 32 /dev/urandom | base64)" \
  /usr/sbin/chroot --userspec="$uid:$gid" "$ROOT" "${command[@]}" >"$WORK/serve.log" 2>&1 &
SERVER=$!
started=$(date +%s.%N)
wait_ready "http://127.0.0.1:$PORT/readyz" || { tail -20 "$WORK/serve.log" >&2; fail "/readyz did not answer 2xx within 30 s"; }
ready_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
status=$(curl -s -o "$WORK/readyz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")
[ "$status" = 200 ] || fail "/readyz answered $status"
health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
[ "$health" = 200 ] || fail "/healthz answered $health"
read -r _ ruid euid _ < <(grep '^Uid:' "/proc/$SERVER/status")
[ "$(readlink "/proc/$SERVER/exe")" = "$ROOT/usr/local/bin/flashsale" ] || fail "the server is not the image's binary"
[ "$ruid" = "$uid" ] && [ "$euid" = "$uid" ] || fail "the server runs as uid $ruid/$euid, not $uid"
written=$(find "$ROOT" -path "$ROOT/proc" -prune -o -newer "$WORK/before-run" -not -path "$ROOT/tmp" -print | sed "s|^$ROOT||")
[ -z "$written" ] || fail "the service wrote to its root file system: $written"
kill -TERM "$SERVER"
rc=0; timeout 20 tail --pid="$SERVER" -f /dev/null || rc=$?
wait "$SERVER" 2>/dev/null || rc=$?
SERVER=
[ "$rc" = 0 ] || fail "the server did not stop cleanly on SIGTERM (exit $rc)"

echo "image-test: image $IMAGE: $((size / 1000000)) MB ($size bytes), $files files, USER $user, no shell, no HEALTHCHECK"
echo "image-test: chroot --userspec=$uid:$gid: /readyz 200 after $ready_s s ($(cat "$WORK/readyz.json")), /healthz 200, server uid $euid, nothing written to the root file system, clean exit on SIGTERM"
echo "image-test: PASS"
