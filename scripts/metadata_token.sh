#!/usr/bin/env bash
# Print an access token of the build's service account from the metadata server (Cloud Build provides one):
# the docker provider reads it from DOCKER_REGISTRY_PASS, so no token is ever written into Terraform state.
set -euo pipefail
curl -fsS -H 'Metadata-Flavor: Google' \
  'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
