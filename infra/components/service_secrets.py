"""The service's two secrets in Secret Manager: the operator token (ADMIN_TOKEN) and the canary's routing key.

Why Secret Manager and not a plain environment value: anyone with `run.viewer` reads a revision's environment,
and the operator token unlocks full reasons and the drift reset; the routing key lets whoever holds it compute
which side of the canary a caller lands on (service/rollout.py). Cloud Run maps each secret's latest version
onto the variable; only the service's own account may access them (one accessor binding per secret, no
project-wide role). Why no value in the Terraform state: the first version's payload goes through the
write-only `secret_data_wo` (Terraform >= 1.11), fed by an ephemeral variable that the deploy step fills with a
fresh random value (TF_VAR_<name>, cloudbuild-deploy.yaml and the Makefile); `secret_data_wo_version` stays 1,
so later applies send nothing and the value never changes unless an operator bumps it (rotation).
"""

from __future__ import annotations

from cdktf import TerraformVariable, TerraformVariableValidationConfig
from cdktf_cdktf_provider_google.secret_manager_secret import SecretManagerSecret
from cdktf_cdktf_provider_google.secret_manager_secret_iam_member import SecretManagerSecretIamMember
from cdktf_cdktf_provider_google.secret_manager_secret_version import SecretManagerSecretVersion
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.naming import Names
from infra.teardown import TeardownPolicy

MIN_CHARS = 24  # service/config.py's minimum for both ADMIN_TOKEN and ROUTING_SECRET
# environment variable -> (secret id suffix, Terraform variable that seeds its first version)
SECRETS = {
    "ADMIN_TOKEN": ("admin-token", "service_admin_token"),
    "ROUTING_SECRET": ("routing-key", "service_routing_key"),
}


def service_secret(
    scope: Construct, suffix: str, *, names: Names, teardown: TeardownPolicy, apis: Apis, identity: Identity
) -> tuple[SecretManagerSecret, SecretManagerSecretIamMember]:
    """A secret `<service>-<suffix>` that the service's own account alone may access (one binding on the secret,
    no project-wide role); its versions are the caller's."""
    secret = SecretManagerSecret(
        scope,
        suffix,
        secret_id=f"{names.cloud_run_service}-{suffix}",
        replication={"auto": {}},
        labels=names.labels,
        deletion_protection=teardown.argument("deletion_protection"),
        depends_on=[apis["secretmanager.googleapis.com"]],
    )
    accessor = SecretManagerSecretIamMember(
        scope,
        f"{suffix}-accessor",
        secret_id=secret.id,
        role="roles/secretmanager.secretAccessor",
        member=identity.member("service"),
    )
    return secret, accessor


class ServiceSecrets(Construct):
    def __init__(
        self, scope: Construct, id: str, *, names: Names, teardown: TeardownPolicy, apis: Apis, identity: Identity
    ):
        super().__init__(scope, id)
        self.secrets: dict[str, SecretManagerSecret] = {}
        self.versions: list[SecretManagerSecretVersion] = []
        self.accessors: list[SecretManagerSecretIamMember] = []
        for variable_name, (suffix, seed_name) in SECRETS.items():
            seed = TerraformVariable(
                self,
                seed_name,
                type="string",
                sensitive=True,
                nullable=False,
                description=f"first value of {names.cloud_run_service}-{suffix} (write-only: never in state or plan)",
                validation=[
                    TerraformVariableValidationConfig(
                        condition=f"${{length(var.{seed_name}) >= {MIN_CHARS}}}",
                        error_message=f"TF_VAR_{seed_name} must be a random string of at least {MIN_CHARS} "
                        "characters (the deploy step generates one)",
                    )
                ],
            )
            seed.override_logical_id(seed_name)
            seed.add_override("ephemeral", True)
            secret, accessor = service_secret(
                self, suffix, names=names, teardown=teardown, apis=apis, identity=identity
            )
            self.secrets[variable_name] = secret
            self.accessors.append(accessor)
            self.versions.append(
                SecretManagerSecretVersion(
                    self,
                    f"{suffix}-version",
                    secret=secret.id,
                    secret_data_wo=seed.string_value,
                    secret_data_wo_version=1,
                )
            )

    def environment(self) -> list[dict[str, object]]:
        """Cloud Run container env entries that map each secret's latest version onto its variable."""
        return [
            {"name": name, "value_source": {"secret_key_ref": {"secret": secret.secret_id, "version": "latest"}}}
            for name, secret in self.secrets.items()
        ]
