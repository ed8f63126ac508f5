"""An optional Vertex AI Workbench instance for the notebooks in notebooks/ (`infra.workbench.enabled: true`).

Why a dedicated service account, not the trainer's: without `instance_owners`, whoever may act as the instance's
account may open its JupyterLab, and code in it runs with that account's rights. The trainer's account can write
the models bucket (register versions) and run Vertex AI jobs; giving a person its actAs would hand them both.
The notebooks need less: read the datasets and models buckets, write runs and reports to the dev bucket, call
the Cloud Run service. So the `workbench` account holds exactly that, and `infra.workbench.users` may act as it.
The account, and who may act as it, belong to the bootstrap stack (infra/components/accounts.py, only when enabled):
the deployer creates no account and cannot change an account's IAM policy; here it is referenced by email.
Its right to call the Cloud Run service is granted in the serving stack (infra/serving_stack.py), where the service is.

No public IP: the VM sits in its own subnet with Private Google Access (Google APIs and the Workbench proxy) and
reaches the internet only through Cloud NAT (pip, git). Idle shutdown stops it after the configured minutes;
boot and data disks use the bootstrap stack's CMEK key, which the Compute Engine and Notebooks service agents may
use: the Compute Engine agent exists once its API is enabled (Google refuses to generate it on request), the
Notebooks agent is created lazily by Google, so a `google_project_service_identity` creates it here.
`cdktf destroy` removes all of it in environments without deletion protection; with it (prod), the instance,
whose data disk holds the users' work, refuses like the buckets.
"""

from __future__ import annotations

from cdktf import TerraformProvider
from cdktf_cdktf_provider_google.compute_firewall import ComputeFirewall, ComputeFirewallDeny
from cdktf_cdktf_provider_google.compute_network import ComputeNetwork
from cdktf_cdktf_provider_google.compute_router import ComputeRouter
from cdktf_cdktf_provider_google.compute_router_nat import ComputeRouterNat, ComputeRouterNatSubnetwork
from cdktf_cdktf_provider_google.compute_subnetwork import ComputeSubnetwork
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktf_cdktf_provider_google.project_service import ProjectService
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.workbench_instance import (
    WorkbenchInstance,
    WorkbenchInstanceGceSetup,
    WorkbenchInstanceGceSetupNetworkInterfaces,
    WorkbenchInstanceGceSetupServiceAccounts,
)
from constructs import Construct

from infra.components.apis import Apis
from infra.components.kms import ENCRYPTER_DECRYPTER, KeyGrants
from infra.components.service_agents import identity_member, service_identity
from infra.components.storage import Storage
from infra.components.waits import propagation_wait
from infra.naming import WORKBENCH_SUFFIX, Names
from infra.teardown import TeardownPolicy

APIS = ("compute.googleapis.com", "notebooks.googleapis.com")
SUBNET_RANGE = "10.20.0.0/24"
ZONE_SUFFIX = "b"  # a zone every region of ours has (us-east1 has no -a)
DATA_DISK_GB = "100"
BUCKET_ACCESS = (  # (bucket kind, IAM role): what the three notebooks read and write
    ("datasets", "roles/storage.objectViewer"),
    ("models", "roles/storage.objectViewer"),
    ("dev", "roles/storage.objectAdmin"),
)
METADATA = {
    "notebook-disable-root": "true",  # no sudo in JupyterLab's terminals: the account's rights are the limit
    "enable-guest-attributes": "true",  # idle shutdown reads the activity the guest agent reports there
}


class Workbench(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        kms: KeyGrants,
        storage: Storage,
        project: DataGoogleProject,
        beta: TerraformProvider,
    ):
        super().__init__(scope, id)
        settings = names.settings.infra.workbench
        prefix = f"fmnist-{names.env}-workbench"
        # Joined to the stack's APIs so the budget, built after this, watches them too (policy CKV2_FMNIST_3).
        for api in APIS:
            apis.services[api] = ProjectService(
                self,
                api.split(".")[0],
                project=names.project,
                service=api,
                disable_on_destroy=teardown.disable_apis_on_destroy,
                disable_dependent_services=False,
            )
        compute, notebooks = apis["compute.googleapis.com"], apis["notebooks.googleapis.com"]

        self.email = names.service_account_email(WORKBENCH_SUFFIX)  # created by the bootstrap stack
        member = names.account_member(WORKBENCH_SUFFIX)
        for kind, role in BUCKET_ACCESS:
            StorageBucketIamMember(
                self, f"{kind}-{role.split('.')[-1]}", bucket=storage.buckets[kind].name, role=role, member=member
            )
        # Compute Engine writes the CMEK disks, the Workbench agent creates them: both need the key. The Compute
        # Engine agent comes with its API (the API refuses to generate it on request); the Notebooks one is made here.
        self.notebooks_agent = service_identity(
            self, "notebooks_agent", names=names, apis=apis, api="notebooks.googleapis.com", beta=beta
        )
        agents = {
            "compute_agent": (
                f"serviceAccount:service-{project.number}@compute-system.iam.gserviceaccount.com",
                compute,
            ),
            "notebooks_agent": (identity_member(self.notebooks_agent), self.notebooks_agent),
        }
        self.key_grants = [
            KmsCryptoKeyIamMember(
                self,
                f"{agent}_encrypter",
                crypto_key_id=kms.key_id,
                role=ENCRYPTER_DECRYPTER,
                member=agent_member,
                depends_on=[apis["cloudkms.googleapis.com"], source],
            )
            for agent, (agent_member, source) in agents.items()
        ]

        self.network = ComputeNetwork(
            self,
            "network",
            name=prefix,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            depends_on=[compute],
        )
        self.subnet = ComputeSubnetwork(
            self,
            "subnet",
            name=prefix,
            network=self.network.id,
            region=names.region,
            ip_cidr_range=SUBNET_RANGE,
            private_ip_google_access=True,
            log_config={
                "aggregation_interval": "INTERVAL_10_MIN",
                "flow_sampling": 0.5,
                "metadata": "INCLUDE_ALL_METADATA",
            },
        )
        ComputeFirewall(
            self,
            "deny-ingress",
            name=f"{prefix}-deny-ingress",
            network=self.network.id,
            direction="INGRESS",
            priority=65534,
            deny=[ComputeFirewallDeny(protocol="all")],
            source_ranges=["0.0.0.0/0"],
            log_config={"metadata": "INCLUDE_ALL_METADATA"},
        )
        router = ComputeRouter(self, "router", name=prefix, network=self.network.id, region=names.region)
        ComputeRouterNat(
            self,
            "nat",
            name=prefix,
            router=router.name,
            region=names.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetwork=[ComputeRouterNatSubnetwork(name=self.subnet.id, source_ip_ranges_to_nat=["ALL_IP_RANGES"])],
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
        )

        cmek = {"disk_encryption": "CMEK", "kms_key": kms.key_id, "disk_type": "PD_BALANCED"}
        self.instance = WorkbenchInstance(
            self,
            "instance",
            name=prefix,
            location=f"{names.region}-{ZONE_SUFFIX}",
            labels=names.labels,
            gce_setup=WorkbenchInstanceGceSetup(
                machine_type=settings.machine_type,
                disable_public_ip=True,
                service_accounts=[WorkbenchInstanceGceSetupServiceAccounts(email=self.email)],
                network_interfaces=[
                    WorkbenchInstanceGceSetupNetworkInterfaces(network=self.network.id, subnet=self.subnet.id)
                ],
                boot_disk=cmek,
                data_disks={**cmek, "disk_size_gb": DATA_DISK_GB},
                shielded_instance_config={
                    "enable_secure_boot": True,
                    "enable_vtpm": True,
                    "enable_integrity_monitoring": True,
                },
                metadata={**METADATA, "idle-timeout-seconds": str(settings.idle_shutdown_minutes * 60)},
            ),
            lifecycle=teardown.lifecycle(),
            depends_on=[notebooks, propagation_wait(self, "key-grants-propagated", after=list(self.key_grants))],
        )
