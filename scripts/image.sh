#!/usr/bin/env bash
# `make image`: stages a minimal root file system from the release build and builds ./Containerfile
# (FROM scratch + COPY) from it with podman. Builds offline: no base image is pulled.
#   rootfs/usr/local/bin/flashsale   the release binary (debug info stripped; symbols kept for backtraces)
#   rootfs/<path>                    every shared library `ldd` names, at the path it names, and the loader
#   rootfs/etc/ssl/certs/ca-certificates.crt (+ OpenSSL's default paths pointing at it)
#   rootfs/etc/passwd, /etc/group    root and the service user flashsale (10001:10001), no login shell
#   rootfs/etc/nsswitch.conf         hosts: files dns
#   rootfs/tmp                       empty, 1777 (the service writes nothing at run time)
# Environment: FLASHSALE_BIN (default .build/release/flashsale), IMAGE (default localhost/flashsale:dev),
# IMAGE_STAGE_DIR (default .build/image), IMAGE_VERSION, IMAGE_BUILD=0 to stage only.
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY=${FLASHSALE_BIN:-.build/release/flashsale}
IMAGE=${IMAGE:-localhost/flashsale:dev}
STAGE=${IMAGE_STAGE_DIR:-.build/image}
APP_UID=10001
APP_GID=10001

[ -x "$BINARY" ] || { echo "image: $BINARY is missing (make release)" >&2; exit 1; }
rm -rf "$STAGE"
ROOT=$STAGE/rootfs
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/ssl/certs" "$ROOT/usr/lib/ssl" "$ROOT/tmp"

install -m 0755 "$BINARY" "$ROOT/usr/local/bin/flashsale"
strip --strip-debug "$ROOT/usr/local/bin/flashsale"

# Exactly the libraries ldd names (linux-vdso is in the kernel), each at the path ldd resolved.
libs=$(ldd "$BINARY")
if grep -q "not found" <<<"$libs"; then echo "image: unresolved libraries:" >&2; grep "not found" <<<"$libs" >&2; exit 1; fi
count=0
while read -r path; do
  [ -n "$path" ] || continue
  mkdir -p "$ROOT$(dirname "$path")"
  cp -L "$path" "$ROOT$path"
  chmod 0644 "$ROOT$path"
  case "$path" in */ld-linux*) chmod 0755 "$ROOT$path" ;; esac
  strip --strip-debug "$ROOT$path" 2>/dev/null || true
  count=$((count + 1))
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs" | sort -u)

# CA certificates (libmongoc's TLS and anything else using OpenSSL's defaults).
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
ln -s /etc/ssl/certs/ca-certificates.crt "$ROOT/usr/lib/ssl/cert.pem"
ln -s /etc/ssl/certs "$ROOT/usr/lib/ssl/certs"

cat > "$ROOT/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
flashsale:x:$APP_UID:$APP_GID:FlashSale:/nonexistent:/usr/sbin/nologin
PASSWD
cat > "$ROOT/etc/group" <<GROUP
root:x:0:
flashsale:x:$APP_GID:
GROUP
echo "hosts: files dns" > "$ROOT/etc/nsswitch.conf"
chmod 0644 "$ROOT/etc/passwd" "$ROOT/etc/group" "$ROOT/etc/nsswitch.conf"
chmod 1777 "$ROOT/tmp"
# Everything belongs to root and is read-only to the service user.
chown -R 0:0 "$ROOT" 2>/dev/null || true
find "$ROOT" -type d -not -path "$ROOT/tmp" -exec chmod 0755 {} +

echo "image: staged $ROOT ($count libraries, $(du -sh "$ROOT" | cut -f1))"
[ "${IMAGE_BUILD:-1}" = 1 ] || exit 0

command -v podman >/dev/null || { echo "image: podman is not installed (scripts/bootstrap.sh installs it)" >&2; exit 1; }
VERSION=${IMAGE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
podman build --quiet --pull=never --layers=false -f Containerfile \
  --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$IMAGE" "$STAGE" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image: built $IMAGE ($((size / 1000000)) MB)"
