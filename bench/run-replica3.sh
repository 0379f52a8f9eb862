#!/usr/bin/env bash
# Replica 3, side by side on this machine: Cairn (three cairnd on 127.0.9.1-3, release build)
# and GlusterFS (Debian's glusterfs-server, three bricks on this host), both through FUSE.
#
#   1. smallfiles: FILES MR-sized files (57 KiB) ingested by THREADS writers, cold read, list,
#      delete; the local disk as the reference.
#   2. heal: one brick is stopped, HEAL_FILES MR-sized files are ingested, the brick comes
#      back; the time until no entry is pending, and the brick trees are compared.
#
# Usage: bench/run-replica3.sh [FILES] [HEAL_FILES] [THREADS]        (as root)
#   BENCH_ONLY=cairn or BENCH_ONLY=gluster runs one side; BENCH_SKIP=heal or smallfiles skips
#   a part. GlusterFS is installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
files=${1:-2000}
heal_files=${2:-20000}
threads=${3:-8}
size=$((57 * 1024))
only=${BENCH_ONLY:-cairn,gluster}
skip=${BENCH_SKIP:-}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

cargo build --release --bins --locked -q
bin=$top/target/release
work=$(mktemp -d /tmp/cairn-bench.XXXXXX)
export CAIRN_RUN=$work/cairn CAIRN_NET=127.0.9 CAIRN_PORT=24017
gvol=benchrep3
gmnt=$work/gluster-mnt

wants() { [[ ",$only," == *",$1,"* ]] && [[ ",$skip," != *",$2,"* ]]; }

. bench/lib.sh
trap bench_cleanup EXIT

smallfiles() { "$bin/smallfiles" "$@" --threads "$threads" --size "$size"; }

# Waits until `pending` prints 0 (polled every second); prints the seconds it took.
wait_healed() {
  local pending=$1 start=$2 n
  while :; do
    n=$($pending)
    if [ "$n" = 0 ]; then break; fi
    sleep 1
  done
  awk -v a="$(now)" -v b="$start" 'BEGIN { printf "%.1f\n", a - b }'
}

# Same files, same sizes, same contents on both bricks (metadata dirs left out).
same_tree() {
  local a=$1 b=$2 skipdir=$3
  diff <(cd "$a" && find . -path "./$skipdir" -prune -o -type f -print0 | sort -z | xargs -0 md5sum) \
       <(cd "$b" && find . -path "./$skipdir" -prune -o -type f -print0 | sort -z | xargs -0 md5sum) \
    >/dev/null
}

report_heal() {
  local label=$1 secs=$2
  awk -v l="$label" -v s="$secs" -v n="$heal_files" -v b="$size" 'BEGIN {
    printf "%s — heal of %d files × %d bytes missed by one brick\n", l, n, b
    printf "  healed in %8.1f s %10.0f files/min %9.1f MB/s\n", s, n * 60 / s, n * b / s / 1e6 }'
}

mkdir -p "$work/local"
if [[ ",$skip," != *",smallfiles,"* ]]; then
  smallfiles "$work/local" --files "$files" --label "local disk"
fi

if wants cairn x; then
  CAIRN_PROFILE=release scripts/cluster up >/dev/null
  cmnt=$CAIRN_RUN/mnt
  if wants cairn smallfiles; then
    smallfiles "$cmnt" --files "$files" --label "cairn replica 3 (FUSE)"
  fi
  if wants cairn heal; then
    b3="$CAIRN_NET.3:$CAIRN_RUN/bricks/b3"
    ccli volume reset-brick pacs "$b3" start >/dev/null
    for _ in $(seq 100); do
      pgrep -f "cairn-brickd.*$CAIRN_RUN/bricks/b3" >/dev/null || break
      sleep 0.1
    done
    smallfiles "$cmnt" --files "$heal_files" --phases ingest --keep --label "cairn ingest, one brick down"
    cpending() {
      local out
      out=$(ccli volume heal pacs info summary 2>/dev/null) || { echo unknown; return; }
      awk '/Total Number of entries:/ {s += $NF; n++} END {print n ? s : "unknown"}' <<< "$out"
    }
    echo "  pending before the brick returns: $(cpending)"
    t0=$(now)
    ccli volume reset-brick pacs "$b3" "$b3" commit >/dev/null
    secs=$(wait_healed cpending "$t0")
    report_heal "cairn" "$secs"
    if same_tree "$CAIRN_RUN/bricks/b1" "$CAIRN_RUN/bricks/b3" .cairn; then
      echo "  brick trees identical"
    else
      echo "  BRICK TREES DIFFER" >&2; exit 1
    fi
  fi
  CAIRN_PROFILE=release scripts/cluster down >/dev/null
fi

if wants gluster x; then
  gluster_up
  if wants gluster smallfiles; then
    smallfiles "$gmnt" --files "$files" --label "glusterfs $(glusterfs --version | awk 'NR==1 {print $2}') replica 3 (FUSE)"
  fi
  if wants gluster heal; then
    pid=$(gluster volume status "$gvol" "$host:$gb/b3" detail 2>/dev/null | awk -F: '/^Pid/ {gsub(/ /, "", $2); print $2}')
    kill -9 "$pid"
    smallfiles "$gmnt" --files "$heal_files" --phases ingest --keep --label "glusterfs ingest, one brick down"
    gpending() {
      local out
      out=$(gluster volume heal "$gvol" info summary 2>/dev/null) || { echo unknown; return; }
      awk '/Total Number of entries:/ {s += $NF; n++} END {print n ? s : "unknown"}' <<< "$out"
    }
    echo "  pending before the brick returns: $(gpending)"
    t0=$(now)
    gluster --mode=script volume start "$gvol" force >/dev/null
    secs=$(wait_healed gpending "$t0")
    report_heal "glusterfs" "$secs"
    if same_tree "$gb/b1" "$gb/b3" .glusterfs; then
      echo "  brick trees identical"
    else
      echo "  BRICK TREES DIFFER" >&2; exit 1
    fi
  fi
fi
