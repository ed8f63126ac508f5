#!/usr/bin/env bash
# The base images of service/Dockerfile and trainer/Dockerfile, for `make images`. Each Dockerfile names its public
# base as the default of a build argument (what Cloud Build pulls). Where that base cannot be pulled (Docker Hub is
# unreachable from these machines), a stand-in is built from Debian packages instead: debootstrap bookworm with
# Debian's Python 3.11 (the same minor as the public base), and for the trainer that base plus tensorflow-cpu.
# Writes .containers/bases.env: the --build-arg values `make images` passes (empty when the public bases pulled).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
podman=(scripts/podman.sh)
out=.containers/bases.env
mkdir -p .containers
default_of() {  # the default of `ARG NAME=...` in a Dockerfile: the one place the public base is written
  sed -n "s/^ARG $2=//p" "$1" | head -n 1
}
python_public="$(default_of service/Dockerfile PYTHON_BASE)"
tf_public="$(default_of trainer/Dockerfile TF_BASE)"
tf_tag="${tf_public%@*}"  # without its digest
tf_version="${tf_tag##*:}"
python_standin=localhost/fmnist-standin/python:3.11-slim-bookworm
tf_standin="localhost/fmnist-standin/tensorflow:${tf_version}"

have() { "${podman[@]}" image exists "$1" 2>/dev/null; }
pull() { have "$1" || "${podman[@]}" pull -q "$1" >/dev/null 2>&1; }

# pip inside a build reaches PyPI through whatever TLS proxy the host trusts: mount the host's CA bundle and a
# pip.conf naming it for the build only (nothing lands in a layer).
ca=/etc/ssl/certs/ca-certificates.crt
build_mounts=()
if [ -f "$ca" ]; then
  printf '[global]\ncert = %s\n' "$ca" >.containers/pip.conf
  build_mounts=(-v "$ca:$ca:ro" -v "$root/.containers/pip.conf:/etc/pip.conf:ro")
fi

python_base="$python_public"
if ! pull "$python_public"; then
  python_base="$python_standin"
  if ! have "$python_standin"; then
    command -v debootstrap >/dev/null || { echo "debootstrap missing: run 'make system-deps' as root" >&2; exit 1; }
    echo "cannot pull $python_public: building the stand-in $python_standin from Debian bookworm packages"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # What makes debian:bookworm-slim (under python:3.11-slim-bookworm) slim: no documentation but the copyright
    # files, no manuals, no translations (52 of 176 MB here), for the packages installed later too.
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
      >"$rootfs/etc/dpkg/dpkg.cfg.d/slim"
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/info/* \
      "$rootfs"/usr/share/lintian/* "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -c . |
      "${podman[@]}" import -q --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$python_standin" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
fi

tf_base="$tf_public"
if ! pull "$tf_public"; then
  tf_base="$tf_standin"
  if ! have "$tf_standin"; then
    echo "cannot pull $tf_public: building the stand-in $tf_standin ($python_base + tensorflow-cpu==$tf_version)"
    # python3 on PATH has TensorFlow and pip, as in the public image (there: the system interpreter; here a venv,
    # because Debian's interpreter refuses pip installs).
    printf 'FROM %s\nRUN python3 -m venv /opt/tensorflow && /opt/tensorflow/bin/pip install -q --no-cache-dir %s\nENV PATH=/opt/tensorflow/bin:$PATH\n' \
      "$python_base" "tensorflow-cpu==$tf_version" |
      "${podman[@]}" build -q --pull=never "${build_mounts[@]}" -t "$tf_standin" -f - .containers >/dev/null
  fi
fi

{
  [ "$python_base" = "$python_public" ] || echo "PYTHON_BASE=$python_base"
  [ "$tf_base" = "$tf_public" ] || echo "TF_BASE=$tf_base"
} >"$out"
echo "bases: python=$python_base tensorflow=$tf_base"
