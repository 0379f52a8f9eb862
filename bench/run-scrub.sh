#!/usr/bin/env bash
# Bitrot scrub rate per throttle level, and what a running scrub costs series reads.
#
# A three-node replica-3 Cairn cluster (127.0.9.1-3, release build) with bitrot on; FILES
# CT-sized images (517 KiB) ingested and signed. Then:
#   1. series read (P readers, cold cache, every byte verified) with no scrub: the baseline;
#   2. for each throttle level: an on-demand scrub alone, timed (MB/s per node: each node
#      scrubs its own brick at the level's cap), then the same scrub again with the series
#      read running beside it (read files/s and MB/s).
#
# Usage: bench/run-scrub.sh [FILES] [THREADS]        (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
files=${1:-2000}
threads=${2:-8}
size=$((517 * 1024))
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

cargo build --release --bins --locked -q
bin=$top/target/release
work=$(mktemp -d /tmp/cairn-scrub.XXXXXX)
export CAIRN_RUN=$work/cairn CAIRN_NET=127.0.9 CAIRN_PORT=24017

. bench/lib.sh
trap bench_cleanup EXIT

CAIRN_PROFILE=release scripts/cluster up >/dev/null
mnt=$CAIRN_RUN/mnt
ccli volume bitrot pacs signing-time 1 >/dev/null
ccli volume bitrot pacs enable >/dev/null
# Bricks restart with signing on; let the mount reconnect.
sleep 5
"$bin/smallfiles" "$mnt" --files "$files" --threads "$threads" --size "$size" \
  --phases ingest --keep --label "ingest" >/dev/null

runs() { ccli --json volume bitrot pacs scrub status | sed -n 's/.*"runs": *\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }'; }
bytes() { ccli --json volume bitrot pacs scrub status | sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }'; }
scrub_until_done() {
  local before=$1
  while [ "$(runs)" -lt $((before + 3)) ]; do sleep 0.2; done
}

# A first run signs what the signer has not reached yet; after it, every file is signed.
ccli volume bitrot pacs scrub-throttle aggressive >/dev/null
r=$(runs); ccli volume bitrot pacs scrub ondemand >/dev/null; scrub_until_done "$r"

read_phase() {
  "$bin/smallfiles" "$mnt" --files "$files" --threads "$threads" --size "$size" \
    --phases read --keep --label "$1" | sed -n '/read/p'
}

echo "Cairn replica 3 on three local nodes: $files files x $size bytes, $threads readers"
echo "series read, no scrub:"
read_phase "no scrub"
for level in lazy normal aggressive; do
  ccli volume bitrot pacs scrub-throttle "$level" >/dev/null
  sync; echo 3 > /proc/sys/vm/drop_caches
  r=$(runs); t0=$(now)
  ccli volume bitrot pacs scrub ondemand >/dev/null
  scrub_until_done "$r"
  secs=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
  b=$(bytes)
  awk -v l="$level" -v s="$secs" -v b="$b" 'BEGIN {
    printf "scrub %-10s alone: %.1f MB read by 3 nodes in %.1f s: %.1f MB/s per node\n", l, b / 1e6, s, b / 3 / s / 1e6 }'
  r=$(runs)
  ccli volume bitrot pacs scrub ondemand >/dev/null
  sleep 0.5
  echo "series read during a $level scrub:"
  read_phase "during $level scrub"
  scrub_until_done "$r"
done
