#!/usr/bin/env bash
# Client memory under many lookups: N distinct files are looked up (stat by path, cold)
# through a FUSE mount whose graph has quick-read and md-cache (as cairnd generates it),
# then the peak resident memory of the FUSE client and of the brick is reported. The files
# are made directly in a fresh brick directory (Cairn gives each its identity at its first
# lookup), so that making a million of them takes a minute rather than an hour; one brick
# is enough, since the client's tables grow per file, not per copy.
#
# Usage: bench/run-lookups.sh [N]   (as root; default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
cargo build --release --bins --locked -q
bin=$(pwd)/target/release
work=$(mktemp -d /tmp/cairn-lookups.XXXXXX)
mnt=$work/mnt
brick_pid=""
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt"; fi
  [ -n "$brick_pid" ] && kill "$brick_pid" 2>/dev/null && wait "$brick_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/brick" "$mnt"
"$bin/cairn-brickd" --directory "$work/brick" --listen 127.0.0.1:0 --volume mem \
  --volume-id mem-bench --brick-id b0 --init --log-file "$work/brick.log" > "$work/brick.out" &
brick_pid=$!
for _ in $(seq 100); do grep -q "^listening on" "$work/brick.out" && break; sleep 0.1; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/brick.out")
[ -n "$port" ] || { echo "brick did not start" >&2; cat "$work/brick.log" >&2; exit 1; }

echo "making $n files on the brick..."
python3 - "$work/brick" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 10000
for i in range(n):
    d = os.path.join(root, f"d{i // per:04d}")
    if i % per == 0:
        os.mkdir(d)
    os.close(os.open(os.path.join(d, f"IM-{i % per:05d}.dcm"), os.O_CREAT | os.O_WRONLY, 0o644))
PY

cat > "$work/client.vol" <<EOF
version: 1
volume: mem
role: client
top: mem-io-stats
graph:
  - name: mem-client-0
    type: protocol/client
    options:
      remote-host: 127.0.0.1
      remote-port: $port
      volume-id: mem-bench
      remote-brick: b0
  - name: mem-quick-read
    type: performance/quick-read
    subvolumes: [mem-client-0]
  - name: mem-md-cache
    type: performance/md-cache
    subvolumes: [mem-quick-read]
  - name: mem-io-stats
    type: debug/io-stats
    subvolumes: [mem-md-cache]
EOF
"$bin/cairn" mount --volfile "$work/client.vol" "$mnt" --log-file "$work/mount.log"
client_pid=$(pgrep -f "cairn .*mount.*$mnt" | head -1)

echo "looking up $n files by path..."
start=$(date +%s.%N)
python3 - "$mnt" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 10000
for i in range(n):
    os.stat(os.path.join(root, f"d{i // per:04d}", f"IM-{i % per:05d}.dcm"))
PY
end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{int(sys.argv[3]):,} lookups in {s:.1f} s ({int(sys.argv[3])/s:,.0f}/s)')" "$start" "$end" "$n"
for what in "FUSE client:$client_pid" "brick:$brick_pid"; do
  pid=${what#*:}
  echo "${what%%:*} (pid $pid): $(awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {printf "RSS %d MiB, peak %d MiB", r/1024, h/1024}' /proc/$pid/status)"
done
