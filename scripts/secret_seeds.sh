# Source this before `cdktf deploy|diff|destroy`: fresh random seeds for the service's Secret Manager secrets
# (infra/components/service_secrets.py). Terraform sends a seed only when it creates the secret's first version
# (a write-only attribute, never stored in state or plan); on every later run the value is ignored, so a new
# random one each time is harmless. A value already in the environment is kept.
for name in TF_VAR_service_admin_token TF_VAR_service_routing_key; do
  if [ -z "$(printenv "$name" || true)" ]; then
    export "$name=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
  fi
done
