#!/usr/bin/env bash
# Install the Debian packages the project needs. As root: install what is missing. Otherwise: say what is missing.
set -euo pipefail
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null || need+=(nodejs npm)
command -v wrk >/dev/null || need+=(wrk)  # the serving benchmark's load generator
# make images / make test-images: podman with runc (scripts/podman.sh says why), its network stack, and
# debootstrap for the stand-in bases where the public ones cannot be pulled (scripts/container_bases.sh).
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/podman/netavark ] || need+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || need+=(aardvark-dns)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  echo "installing Debian packages with sudo: ${need[*]}"
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "missing Debian packages: ${need[*]}" >&2
  echo "run as root (or with sudo): apt-get install -y ${need[*]}" >&2
  echo "without dataset-fashion-mnist, ingest falls back to the public download; without chromium the browser tests skip;" >&2
  echo "without podman, make images fails and the container tests skip." >&2
fi
