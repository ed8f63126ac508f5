#!/usr/bin/env bash
# `make images`: build the service and trainer images with podman, as Cloud Build would build them, tagged
# localhost/fmnist-<image>:<content tag> (contracts/images.py), the tag the container tests look for.
# The bases are the public ones where they can be pulled, else Debian stand-ins (scripts/container_bases.sh).
# PODMAN_BUILD_ARGS adds podman build options (e.g. --no-cache, to measure a cold build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
podman=(scripts/podman.sh)
scripts/container_bases.sh
bases=()
while IFS= read -r line; do
  [ -n "$line" ] && bases+=("$line")
done <.containers/bases.env
# pip inside the build trusts what the host trusts (a TLS-intercepting proxy, say); the mounts leave no layer.
ca=/etc/ssl/certs/ca-certificates.crt
mounts=()
[ -f "$ca" ] && mounts=(-v "$ca:$ca:ro" -v "$root/.containers/pip.conf:/etc/pip.conf:ro")
for image in ${IMAGES:-service trainer}; do
  tag="$(PYTHONPATH="$root" python3 -c "from contracts.images import source_tag; print(source_tag('$image'))")"
  build_args=()
  for base in "${bases[@]}"; do  # only the bases this Dockerfile declares
    grep -q "^ARG ${base%%=*}=" "$image/Dockerfile" && build_args+=(--build-arg "$base")
  done
  start=$SECONDS
  # --format docker: the OCI format drops HEALTHCHECK. --pull=never: the bases are local by now.
  # shellcheck disable=SC2086 # PODMAN_BUILD_ARGS: words on purpose
  "${podman[@]}" build --pull=never --format docker --layers ${PODMAN_BUILD_ARGS:-} "${mounts[@]}" ${build_args[@]+"${build_args[@]}"} \
    --build-arg "CODE_VERSION=$tag" --label "org.opencontainers.image.revision=$tag" \
    -f "$image/Dockerfile" -t "localhost/fmnist-$image:$tag" -t "localhost/fmnist-$image:latest" . >&2
  size="$("${podman[@]}" image inspect --format '{{.Size}}' "localhost/fmnist-$image:$tag")"
  echo "$image: localhost/fmnist-$image:$tag built in $((SECONDS - start)) s, $((size / 1000000)) MB"
done
