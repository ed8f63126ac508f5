"""The bootstrap stack of one environment: what must exist before its main stack can be planned, made once by a
person with `cdktf deploy bootstrap-<env>` (local state, kept by that person; infra/README.md, "Bootstrap").

It holds what outlives the environment: the APIs planning needs, the state bucket, the CMEK key ring and key
(Google Cloud never deletes them, so they cannot follow the environment's destroy and redeploy), the service
accounts, and the rights of the accounts that run Terraform (the deployer cannot change its own).
"""

from __future__ import annotations

from cdktf import LocalBackend, TerraformOutput, TerraformStack
from constructs import Construct

from infra.components.accounts import Accounts
from infra.components.apis import BOOTSTRAP_APIS, Apis
from infra.components.index_signing import IndexSigningKey
from infra.components.kms import CmekKey
from infra.components.providers import google_provider
from infra.components.starter_role import StarterRole
from infra.components.state import StateBucket
from infra.components.vertex_agent import VertexAgentDeny
from infra.guard import deploy_guard
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy
from settings import Settings


def local_state_path(stack: str) -> str:
    """Relative to cdktf.out/stacks/<stack>/, where Terraform runs: the repository root (gitignored there)."""
    return f"../../../terraform.{stack}.tfstate"


class BootstrapStack(TerraformStack):
    def __init__(self, scope: Construct, settings: Settings):
        names = Names.of(settings)
        super().__init__(scope, names.bootstrap_stack)
        self.settings, self.names = settings, names
        teardown = TeardownPolicy.for_settings(settings)
        LocalBackend(self, path=local_state_path(names.bootstrap_stack))
        google_provider(self, names)
        deploy_guard(self, settings)

        self.apis = apis = Apis(self, "apis", names=names, teardown=teardown, services=BOOTSTRAP_APIS)
        for api, service in apis.services.items():
            suppress(
                service,
                "CKV2_FMNIST_3",
                f"The budget of the {names.env} stack watches this project; {api} is enabled here, before that "
                "stack exists, because planning it needs the API.",
            )
        self.accounts = accounts = Accounts(self, "accounts", names=names, apis=apis)
        self.key = key = CmekKey(
            self, "kms", names=names, teardown=teardown, apis=apis, admin=accounts.member("deployer")
        )
        # Only the promoter, whose jobs run the gate (infra/components/promoter.py), may sign the index (issue 25).
        self.index_signing = IndexSigningKey(
            self,
            "index_signing",
            names=names,
            teardown=teardown,
            cmek=key,
            signers=[accounts.member("promoter")],
            viewers=[accounts.member("deployer")],
        )
        # The pipeline starter starts and lists runs, nothing more (issue 25): a custom role, here because only a
        # person may create roles.
        self.starter_role = StarterRole(self, "starter_role", names=names, apis=apis, member=accounts.member("starter"))
        # custom jobs created without an account run as Vertex AI's custom code agent: it reaches nothing (issue 25)
        self.vertex_agent_deny = VertexAgentDeny(self, "vertex_agent", names=names, apis=apis)
        self.state = None
        if settings.infra.state_bucket:
            self.state = StateBucket(self, "state", names=names, teardown=teardown, apis=apis, accounts=accounts)
        outputs = {
            "kms_key": key.key.id,
            "deployer_service_account": accounts.accounts["deployer"].email,
            "planner_service_account": accounts.accounts["planner"].email,
            "state_bucket": self.state.bucket.name if self.state else "(local state)",
        }
        for name, value in outputs.items():
            TerraformOutput(self, name, value=value)
