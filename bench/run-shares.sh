#!/usr/bin/env bash
# The PACS workload through each way in: FUSE, the NFSv3 gateway and the SMB share, on one
# replica-3 Cairn volume (three nodes on 127.0.9.1-3, release build), one run.
#
# For each image size (MR 57 KiB, CT 517 KiB): FILES images ingested by P writers and read
# back (cold for FUSE, every byte verified for all three):
#   FUSE  `smallfiles` on the mount (P threads);
#   NFS   `nfsfiles` (P userspace NFSv3 clients, each its own connection; CREATE, WRITE,
#         COMMIT per image; this machine has no kernel NFS client);
#   SMB   P `smbclient` sessions, each putting then getting one series directory (SMB3).
#
# Usage: bench/run-shares.sh [FILES] [THREADS]        (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
files=${1:-1000}
threads=${2:-8}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
scripts/deps --test >/dev/null

cargo build --release --bins --locked -q
bin=$top/target/release
work=$(mktemp -d /tmp/cairn-shares.XXXXXX)
export CAIRN_RUN=$work/cairn CAIRN_NET=127.0.9 CAIRN_PORT=24017
pass=Bench-pw-1

. bench/lib.sh
trap bench_cleanup EXIT

CAIRN_PROFILE=release scripts/cluster up >/dev/null
printf '%s\n%s\n' "$pass" "$pass" | smbpasswd -c "$CAIRN_RUN/n1/samba/smb.conf" -a -s root >/dev/null
ccli volume set pacs nfs.enable on >/dev/null
ccli volume set pacs smb.enable on >/dev/null
ccli volume set pacs smb.valid-users root >/dev/null
for _ in $(seq 100); do
  nfs-ls "nfs://127.0.9.1/pacs/?version=3&nfsport=2049&mountport=2049" >/dev/null 2>&1 &&
    smbclient //127.0.9.1/pacs -U "root%$pass" -c ls >/dev/null 2>&1 && break
  sleep 0.3
done
mnt=$CAIRN_RUN/mnt

# Local copies of the images for smbclient to put, and a place for what it gets.
make_local() {
  local size=$1 dir=$work/local-$1
  rm -rf "$dir"; mkdir -p "$dir"
  for w in $(seq 0 $((threads - 1))); do mkdir -p "$dir/series-$w"; done
  for i in $(seq 0 $((files - 1))); do
    head -c "$size" /dev/urandom > "$dir/series-$((i % threads))/IM$(printf %07d "$i").dcm"
  done
  echo "$dir"
}

smb_phase() { # put|get SIZE LOCALDIR
  local op=$1 size=$2 src=$3 t0 t1 pids=()
  t0=$(now)
  for w in $(seq 0 $((threads - 1))); do
    if [ "$op" = put ]; then
      smbclient //127.0.9.1/pacs -U "root%$pass" -m SMB3 \
        -c "mkdir smb-$size-$w; cd smb-$size-$w; lcd $src/series-$w; prompt off; mput *" >/dev/null 2>&1 &
    else
      mkdir -p "$work/got-$size/series-$w"
      smbclient //127.0.9.1/pacs -U "root%$pass" -m SMB3 \
        -c "cd smb-$size-$w; lcd $work/got-$size/series-$w; prompt off; mget *" >/dev/null 2>&1 &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now)
  echo "$t0 $t1"
}

report() { # LABEL T0 T1 SIZE
  awk -v l="$1" -v a="$2" -v b="$3" -v n="$files" -v s="$4" \
    'BEGIN { t = b - a; printf "  %-10s %6.2f s  %9.0f files/s  %8.1f MB/s\n", l, t, n / t, n * s / t / 1e6 }'
}

for size in $((57 * 1024)) $((517 * 1024)); do
  echo
  echo "== $files images of $size bytes, $threads writers/readers, replica 3 on three local nodes"
  "$bin/smallfiles" "$mnt" --files "$files" --threads "$threads" --size "$size" \
    --phases ingest,read,delete --label "FUSE"
  "$bin/nfsfiles" 127.0.9.1 /pacs --files "$files" --threads "$threads" --size "$size" \
    --label "NFS (gateway on node 1)"
  src=$(make_local "$size")
  echo "SMB (smbd on node 1) — $files files × $size bytes, $threads sessions"
  read -r a b < <(smb_phase put "$size" "$src"); report ingest "$a" "$b" "$size"
  sync; echo 3 > /proc/sys/vm/drop_caches
  read -r a b < <(smb_phase get "$size" "$src"); report read "$a" "$b" "$size"
  diff -r "$src" "$work/got-$size" >/dev/null || { echo "SMB: bytes differ" >&2; exit 1; }
  rm -rf "$work/got-$size" "$src" "$mnt"/smb-"$size"-*
done
