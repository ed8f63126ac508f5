#!/usr/bin/env bash
# The project's podman: runs podman with the project's own containers.conf and storage.conf (written under
# .containers/, ignored by git), so nothing in /etc changes. Used by `make images`, the base builder and the
# container tests. Why these settings (measured, ../FACTS "Containers on these machines"):
# - runc + cgroupfs: crun 1.8 refuses a hybrid cgroup v1 + v2 host; the file events logger needs no journald.
# - default_ulimits: without CAP_SYS_RESOURCE podman's default nofile of 1048576 cannot be set.
# - overlay storage: vfs copies the whole image for every container (13 s instead of 0.19 s per run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
conf_dir="${FMNIST_CONTAINERS_DIR:-$root/.containers}"
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/podman.sh runs podman as root (the settings measured on these machines); run it as root" >&2
  exit 1
fi
if ! command -v podman >/dev/null; then
  echo "podman is not installed: run 'make system-deps' as root (or: apt-get install podman runc netavark" \
       "aardvark-dns containernetworking-plugins)" >&2
  exit 127
fi
if [ ! -f "$conf_dir/containers.conf" ] || [ ! -f "$conf_dir/storage.conf" ]; then
  mkdir -p "$conf_dir"
  cat >"$conf_dir/containers.conf.tmp" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat >"$conf_dir/storage.conf.tmp" <<'CONF'
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
  mv "$conf_dir/containers.conf.tmp" "$conf_dir/containers.conf"
  mv "$conf_dir/storage.conf.tmp" "$conf_dir/storage.conf"
fi
export CONTAINERS_CONF="$conf_dir/containers.conf"
export CONTAINERS_STORAGE_CONF="$conf_dir/storage.conf"
exec podman "$@"
