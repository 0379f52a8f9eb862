#!/usr/bin/env bash
# Runs bench/smallfiles on the local disk and on a one-brick Cairn volume (release build).
# Usage: bench/run-smallfiles.sh [FILES] [THREADS]     (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-2000}; threads=${2:-8}
cargo build --release --bins --locked -q
bin=target/release
work=$(mktemp -d /tmp/cairn-bench.XXXXXX)
cleanup() {
  umount "$work/mnt" 2>/dev/null || true
  [ -n "${brick:-}" ] && kill "$brick" 2>/dev/null && wait "$brick" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/local" "$work/brick" "$work/mnt"
"$bin/cairn-brickd" --directory "$work/brick" --listen 127.0.0.1:0 --volume bench --volume-id bench \
  --brick-id b0 --init --log-file "$work/brick.log" > "$work/brick.out" &
brick=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/brick.out" && break; sleep 0.1; done
port=$(sed -n 's/^listening on .*://p' "$work/brick.out")
cat > "$work/client.vol" <<VOL
version: 1
volume: bench
role: client
top: bench-io-stats
graph:
  - {name: bench-client-0, type: protocol/client, options: {remote-host: 127.0.0.1, remote-port: $port, volume-id: bench}}
  - {name: bench-io-stats, type: debug/io-stats, subvolumes: [bench-client-0]}
VOL
"$bin/cairn" mount --volfile "$work/client.vol" "$work/mnt" --log-file "$work/mount.log"
for size in $((57 * 1024)) $((517 * 1024)); do
  "$bin/smallfiles" "$work/local" --files "$files" --size "$size" --threads "$threads" --label "local disk"
  "$bin/smallfiles" "$work/mnt" --files "$files" --size "$size" --threads "$threads" --label "cairn (1 brick, FUSE)"
done
