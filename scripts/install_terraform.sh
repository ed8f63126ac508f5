#!/usr/bin/env bash
# Install the pinned Terraform into /usr/local/bin, verified against the checksum kept in this repository
# (not one downloaded from the same host as the binary). Used by the Cloud Build plan and deploy pipelines.
set -euo pipefail
TERRAFORM_VERSION=1.11.4
# sha256 of terraform_1.11.4_linux_amd64.zip as HashiCorp publishes it in terraform_1.11.4_SHA256SUMS.
TERRAFORM_SHA256=1ce994251c00281d6845f0f268637ba50c0005657eb3cf096b92f753b42ef4dc
archive=$(mktemp)
trap 'rm -f "$archive"' EXIT
curl -fsSLo "$archive" "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_amd64.zip"
echo "${TERRAFORM_SHA256}  ${archive}" | sha256sum -c -
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("terraform", "/usr/local/bin")' "$archive"
chmod +x /usr/local/bin/terraform
terraform version
