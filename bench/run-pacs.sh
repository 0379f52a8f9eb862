#!/usr/bin/env bash
# The PACS benchmark, side by side in one run: the local disk, Cairn replica 3 (three cairnd
# on 127.0.9.1-3, release build, FUSE) and GlusterFS replica 3 (Debian's glusterfs-server,
# default options, three bricks on this host by host name, FUSE), each with P = 1 and P = 8.
# Cold phases run on a fresh mount with the page cache dropped (see src/pacs.rs).
#
# Usage: bench/run-pacs.sh [SCALE]        (as root; SCALE 1 = 8 CT series × 50 images and
#        16 MR series × 100 images, ≈ 300 MB; the ls -l directory has 10,000 entries)
#   BENCH_ONLY=local,cairn,gluster picks targets; BENCH_P="1 8" picks P values.
# Writes target/pacs-bench/<target>-p<P>.json and prints a Markdown table (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
scale=${1:-1}
only=${BENCH_ONLY:-local,cairn,gluster}
ps=${BENCH_P:-1 8}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

cargo build --release --bins --locked -q
bin=$top/target/release
out=$top/target/pacs-bench
mkdir -p "$out"
work=$(mktemp -d /tmp/cairn-pacs.XXXXXX)
export CAIRN_RUN=$work/cairn CAIRN_NET=127.0.9 CAIRN_PORT=24017
gvol=benchpacs
gmnt=$work/gluster-mnt
wants() { [[ ",$only," == *",$1,"* ]]; }
. bench/lib.sh
trap bench_cleanup EXIT

# The table shows this run only.
for t in local cairn gluster; do
  if wants "$t"; then rm -f "$out/$t"-p*.json; fi
done

pacs() { # TARGET LABEL DIR REMOUNT
  local target=$1 label=$2 dir=$3 remount=$4
  for p in $ps; do
    "$bin/pacs" "$dir" --threads "$p" --label "$label" \
      --ct-series $((8 * scale)) --mr-series $((16 * scale)) \
      ${remount:+--remount "$remount"} --json "$out/$target-p$p.json"
  done
}

if wants local; then
  mkdir -p "$work/local"
  pacs local "local disk" "$work/local" ""
fi

if wants cairn; then
  CAIRN_PROFILE=release scripts/cluster up >/dev/null
  cmnt=$CAIRN_RUN/mnt
  remount="umount $cmnt && $bin/cairn mount $CAIRN_NET.1:$CAIRN_PORT:/pacs $cmnt \
-o backup-volfile-servers=$CAIRN_NET.2:$CAIRN_NET.3,volfile-server-port=$CAIRN_PORT --log-file $CAIRN_RUN/mount.log"
  pacs cairn "cairn replica 3" "$cmnt" "$remount"
  # Peak resident memory: each brick over the whole run, the client over its last mount
  # (the cold phases after the last remount).
  {
    for pid in $(pgrep -f "$bin/cairn-brickd"); do
      echo "brick pid $pid: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status) peak RSS"
    done
    for pid in $(pgrep -f "$bin/cairn .*mount.*$cmnt"); do
      echo "FUSE client pid $pid: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status) peak RSS"
    done
  } | tee "$out/cairn-memory.txt"
  CAIRN_PROFILE=release scripts/cluster down >/dev/null
fi

if wants gluster; then
  gluster_up
  gver=$(glusterfs --version | awk 'NR==1 {print $2}')
  pacs gluster "glusterfs $gver replica 3" "$gmnt" "umount $gmnt && mount -t glusterfs $host:/$gvol $gmnt"
fi

# The table: images/s (MB/s) per phase, one row per target and P.
echo
echo "| target | P | ingest images/s (MB/s) | series read images/s (MB/s) | series p50 / p99 ms | CT read images/s | MR read images/s | ls -l entries/s | walk entries/s | stat/s | delete/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for t in local cairn gluster; do
  for p in $ps; do
    f=$out/$t-p$p.json
    [ -f "$f" ] || continue
    python3 - "$f" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ph = d["phases"]
def r(k, mb=False):
    x = ph.get(k)
    if not x:
        return "-"
    s = f'{x["ops_per_s"]:,.0f}'
    return s + (f' ({x["mb_per_s"]:.0f})' if mb else "")
rd = ph.get("read", {})
lat = f'{rd.get("series_p50_ms") or 0:.0f} / {rd.get("series_p99_ms") or 0:.0f}'
print(f'| {d["label"]} | {d["threads"]} | {r("ingest", True)} | {r("read", True)} | {lat} | {r("read-ct")} | {r("read-mr")} | {r("ls -l")} | {r("walk")} | {r("stat")} | {r("delete")} |')
PY
  done
done
