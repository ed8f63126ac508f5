"""An optional Vertex AI Workbench instance for the notebooks in notebooks/ (`infra.workbench.enabled: true`).

Why a dedicated service account, not the trainer's: without `instance_owners`, whoever may act as the instance's
account may open its JupyterLab, and code in it runs with that account's rights. The trainer's account can write
the models bucket (register versions) and run Vertex AI jobs; giving a person its actAs would hand them both.
The notebooks need less: read the datasets and models buckets, write runs and reports to the dev bucket, call
the Cloud Run service. So the `workbench` account holds exactly that, and `infra.workbench.users` may act as it.

No public IP: the VM sits in its own subnet with Private Google Access (Google APIs and the Workbench proxy) and
reaches the internet only through Cloud NAT (pip, git). Idle shutdown stops it after the configured minutes;
boot and data disks use the stack's CMEK key. `cdktf destroy` removes all of it in environments without
deletion protection; with it (prod), the instance, whose data disk holds the users' work, refuses like the buckets.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from cdktf_cdktf_provider_google.compute_firewall import ComputeFirewall, ComputeFirewallDeny
from cdktf_cdktf_provider_google.compute_network import ComputeNetwork
from cdktf_cdktf_provider_google.compute_router import ComputeRouter
from cdktf_cdktf_provider_google.compute_router_nat import ComputeRouterNat, ComputeRouterNatSubnetwork
from cdktf_cdktf_provider_google.compute_subnetwork import ComputeSubnetwork
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktf_cdktf_provider_google.project_service import ProjectService
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.workbench_instance import (
    WorkbenchInstance,
    WorkbenchInstanceGceSetup,
    WorkbenchInstanceGceSetupNetworkInterfaces,
    WorkbenchInstanceGceSetupServiceAccounts,
)
from constructs import Construct

from contracts.cloud import SERVICE_ACCOUNT_ID_MAX, CloudNameError
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.kms import ENCRYPTER_DECRYPTER, Kms
from infra.components.serving import Serving
from infra.components.storage import Storage
from infra.naming import Names
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


def account_id(names: Names) -> str:
    account = f"{names.bucket_prefix}-workbench"
    if len(account) > SERVICE_ACCOUNT_ID_MAX:
        raise CloudNameError(
            f"service account id '{account}' is longer than {SERVICE_ACCOUNT_ID_MAX} characters: "
            f"shorten bucket_prefix in config/{names.env}.yaml"
        )
    return account


class Workbench(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        kms: Kms,
        identity: Identity,
        storage: Storage,
        serving: Serving,
        project: DataGoogleProject,
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

        self.account = ServiceAccount(
            self,
            "account",
            account_id=account_id(names),
            display_name=f"fmnist workbench ({names.env})",
            description="Vertex AI Workbench: reads datasets and models, writes the dev bucket, calls the service",
            project=names.project,
            depends_on=[apis["iam.googleapis.com"]],
        )
        member = f"serviceAccount:{self.account.email}"
        for kind, role in BUCKET_ACCESS:
            StorageBucketIamMember(
                self, f"{kind}-{role.split('.')[-1]}", bucket=storage.buckets[kind].name, role=role, member=member
            )
        CloudRunV2ServiceIamMember(
            self,
            "invoker",
            name=serving.service.name,
            location=names.region,
            role="roles/run.invoker",
            member=member,
        )
        # The deployer attaches the account to the instance; the users open the instance by acting as it.
        for index, user in enumerate([identity.member("deployer"), *settings.users]):
            ServiceAccountIamMember(
                self,
                "deployer_acts_as" if index == 0 else f"user-{index}",
                service_account_id=self.account.name,
                role="roles/iam.serviceAccountUser",
                member=user,
            )

        # Compute Engine writes the CMEK disks, the Workbench agent creates them: both need the key.
        self.key_grants = [
            KmsCryptoKeyIamMember(
                self,
                f"{agent}_encrypter",
                crypto_key_id=kms.key.id,
                role=ENCRYPTER_DECRYPTER,
                member=f"serviceAccount:service-{project.number}@{domain}",
                depends_on=[compute, notebooks],
            )
            for agent, domain in (
                ("compute_agent", "compute-system.iam.gserviceaccount.com"),
                ("notebooks_agent", "gcp-sa-notebooks.iam.gserviceaccount.com"),
            )
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

        cmek = {"disk_encryption": "CMEK", "kms_key": kms.key.id, "disk_type": "PD_BALANCED"}
        self.instance = WorkbenchInstance(
            self,
            "instance",
            name=prefix,
            location=f"{names.region}-{ZONE_SUFFIX}",
            labels=names.labels,
            gce_setup=WorkbenchInstanceGceSetup(
                machine_type=settings.machine_type,
                disable_public_ip=True,
                service_accounts=[WorkbenchInstanceGceSetupServiceAccounts(email=self.account.email)],
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
            depends_on=[notebooks, *self.key_grants],
        )
