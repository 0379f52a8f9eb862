# Shared by the bench scripts: source it after setting `work` (a scratch directory), `bin`
# (target/release), CAIRN_RUN and, for GlusterFS, `gvol` and `gmnt`.

ccli() { "$bin/cairn" --server "$CAIRN_RUN/n1/state/cairnd.sock" --mode script "$@"; }
now() { date +%s.%N; }

# Creates, starts and mounts the replica-3 GlusterFS volume $gvol on three bricks under
# $work/gluster (`gb`), addressed by this host's name as GlusterFS requires. Installs
# GlusterFS and starts glusterd when needed.
gluster_up() {
  if ! command -v glusterd >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q glusterfs-server glusterfs-client >/dev/null
  fi
  if ! pgrep -x glusterd >/dev/null; then
    glusterd -p /var/run/glusterd.pid
    started_glusterd=1
  fi
  for _ in $(seq 50); do gluster pool list >/dev/null 2>&1 && break; sleep 0.2; done
  host=$(hostname)
  gb=$work/gluster
  mkdir -p "$gb" "$gmnt"
  gluster --mode=script volume create "$gvol" replica 3 \
    "$host:$gb/b1" "$host:$gb/b2" "$host:$gb/b3" force >/dev/null
  gluster --mode=script volume start "$gvol" >/dev/null
  mount -t glusterfs "$host:/$gvol" "$gmnt"
}

# Stops whatever a bench script started: the Cairn cluster, the GlusterFS volume and mount,
# glusterd if this run started it (it takes port 24007 on every address), and the scratch
# directory.
bench_cleanup() {
  set +e
  if [ -d "${CAIRN_RUN:-/nonexistent}" ]; then
    CAIRN_PROFILE=release scripts/cluster down >/dev/null 2>&1
  fi
  if [ -n "${gmnt:-}" ] && mountpoint -q "$gmnt" 2>/dev/null; then umount "$gmnt"; fi
  if [ -n "${gvol:-}" ] && command -v gluster >/dev/null && gluster volume info "$gvol" >/dev/null 2>&1; then
    gluster --mode=script volume stop "$gvol" force >/dev/null 2>&1
    gluster --mode=script volume delete "$gvol" >/dev/null 2>&1
  fi
  if [ -n "${started_glusterd:-}" ]; then
    pkill -x glusterd; pkill -x glusterfsd; pkill -x glusterfs
  fi
  rm -rf "$work"
}
