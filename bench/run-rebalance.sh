#!/usr/bin/env bash
# Rebalance after an expansion, side by side on this machine: Cairn (three cairnd on
# 127.0.9.1-3, release build) and GlusterFS (Debian's glusterfs-server, bricks on this host).
#
# Each side: a replica-3 volume of one set; FILES MR-sized files (57 KiB) ingested through
# FUSE by THREADS writers; a second set of three bricks added; a full rebalance (layouts
# and migration) started and polled until it completes. Reported: files moved, files/s,
# MB/s, and a check that every file is still listed once through the mount.
#
# Usage: bench/run-rebalance.sh [FILES] [THREADS]        (as root)
#   BENCH_ONLY=cairn or BENCH_ONLY=gluster runs one side.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
files=${1:-100000}
threads=${2:-8}
size=$((57 * 1024))
only=${BENCH_ONLY:-cairn,gluster}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

cargo build --release --bins --locked -q
bin=$top/target/release
work=$(mktemp -d /tmp/cairn-rebal.XXXXXX)
export CAIRN_RUN=$work/cairn CAIRN_NET=127.0.9 CAIRN_PORT=24017
gvol=benchrebal
gmnt=$work/gluster-mnt

wants() { [[ ",$only," == *",$1,"* ]]; }

. bench/lib.sh
trap bench_cleanup EXIT

ingest() { "$bin/smallfiles" "$1" --files "$files" --threads "$threads" --size "$size" --phases ingest --keep --label "$2"; }

report() {
  local label=$1 secs=$2 moved=$3 bytes=$4
  awk -v l="$label" -v s="$secs" -v n="$moved" -v b="$bytes" -v f="$files" 'BEGIN {
    printf "%s — rebalance of %d files after adding a second set\n", l, f
    printf "  %d files moved in %.1f s: %.0f files/s, %.1f MB/s\n", n, s, n / s, b / s / 1e6 }'
}

listed_once() {
  local n
  n=$(find "$1" -type f | wc -l)
  if [ "$n" -ne "$files" ]; then echo "  LISTED $n FILES, WANTED $files" >&2; exit 1; fi
  echo "  every file listed once ($n)"
}

if wants cairn; then
  CAIRN_PROFILE=release scripts/cluster up >/dev/null
  cmnt=$CAIRN_RUN/mnt
  ingest "$cmnt" "cairn replica 3, one set"
  mkdir -p "$CAIRN_RUN/bricks"/b{4,5,6}
  ccli volume add-brick pacs replica 3 "$CAIRN_NET.1:$CAIRN_RUN/bricks/b4" \
    "$CAIRN_NET.2:$CAIRN_RUN/bricks/b5" "$CAIRN_NET.3:$CAIRN_RUN/bricks/b6" force >/dev/null
  sleep 3
  t0=$(now)
  ccli volume rebalance pacs start >/dev/null
  while :; do
    # One entry per node; the node asked (which runs it) comes first.
    st=$(ccli --json volume rebalance pacs status)
    state=$(sed -n 's/.*"state": *"\([^"]*\)".*/\1/p' <<< "$st" | head -1)
    [ "$state" = "in progress" ] || break
    sleep 1
  done
  secs=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  moved=$(sed -n 's/.*"files_migrated": *\([0-9]*\).*/\1/p' <<< "$st" | head -1)
  bytes=$(sed -n 's/.*"bytes_migrated": *\([0-9]*\).*/\1/p' <<< "$st" | head -1)
  echo "  cairn rebalance ended: $state"
  report "cairn" "$secs" "$moved" "$bytes"
  listed_once "$cmnt"
  CAIRN_PROFILE=release scripts/cluster down >/dev/null
fi

if wants gluster; then
  gluster_up
  ingest "$gmnt" "glusterfs $(glusterfs --version | awk 'NR==1 {print $2}') replica 3, one set"
  gluster --mode=script volume add-brick "$gvol" replica 3 \
    "$host:$gb/b4" "$host:$gb/b5" "$host:$gb/b6" force >/dev/null
  sleep 3
  t0=$(now)
  gluster --mode=script volume rebalance "$gvol" start >/dev/null
  while :; do
    st=$(gluster volume rebalance "$gvol" status 2>/dev/null || true)
    grep -q "in progress" <<< "$st" || { grep -qE "completed|failed" <<< "$st" && break; }
    sleep 1
  done
  secs=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  echo "$st"
  # Files moved: the sum of the rebalanced-files column over the nodes.
  moved=$(awk '$1 ~ /^(localhost|'"$host"')$/ {s += $2} END {print s + 0}' <<< "$st")
  report "glusterfs" "$secs" "$moved" "$((moved * size))"
  listed_once "$gmnt"
fi
