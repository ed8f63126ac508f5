"""Policies over a synthesized stack's dependency graph: lessons about how Google Cloud and the google provider
behave on a fresh project, which checkov's per-resource checks cannot express. `python -m infra.scan` runs them
beside checkov, judges them against the same suppression notes, and reports them in the same JUnit XML.

The graph: one node per resource (`type.name`) and data source (`data.type.name`); an edge for every `depends_on`
entry and every `${...}` reference. Each check yields (resource, problem or None) per resource it applies to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from infra import provider_facts

# Resource type prefix -> the API its requests call. A google resource type missing here is itself a finding,
# so that a new construct cannot skip the API checks unseen.
RESOURCE_APIS = {
    "google_aiplatform_": "aiplatform.googleapis.com",
    "google_artifact_registry_": "artifactregistry.googleapis.com",
    "google_bigquery_": "bigquery.googleapis.com",
    "google_billing_account_iam_": "cloudbilling.googleapis.com",
    "google_billing_budget": "billingbudgets.googleapis.com",
    "google_cloud_run_v2_": "run.googleapis.com",
    "google_cloud_scheduler_": "cloudscheduler.googleapis.com",
    "google_cloudbuild_": "cloudbuild.googleapis.com",
    "google_compute_": "compute.googleapis.com",
    "google_kms_": "cloudkms.googleapis.com",
    "google_logging_": "logging.googleapis.com",
    "google_monitoring_": "monitoring.googleapis.com",
    "google_notebooks_": "notebooks.googleapis.com",
    "google_project_iam_": "cloudresourcemanager.googleapis.com",
    "google_project_service": "serviceusage.googleapis.com",
    "google_pubsub_": "pubsub.googleapis.com",
    "google_secret_manager_": "secretmanager.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_iam_deny_policy": "iam.googleapis.com",  # the IAM v2 API (infra/components/vertex_agent.py)
    "google_storage_": "storage.googleapis.com",
    "google_vertex_ai_": "aiplatform.googleapis.com",
    "google_workbench_": "notebooks.googleapis.com",
    # the lifecycle pipeline's starter and triggers (infra/components/pipelines.py)
    "google_eventarc_": "eventarc.googleapis.com",
    "google_cloudfunctions2_": "cloudfunctions.googleapis.com",
    "google_workflows_": "workflows.googleapis.com",
}
# Data source type -> the API it reads (None: answered by the provider itself, no request).
DATA_SOURCE_APIS = {
    "google_bigquery_default_service_account": "bigquery.googleapis.com",
    "google_client_config": None,
    "google_iam_policy": None,
    "google_kms_crypto_key_version": "cloudkms.googleapis.com",
    "google_project": "cloudresourcemanager.googleapis.com",
    "google_storage_project_service_account": "storage.googleapis.com",
}
# APIs a data source may need when it is read at plan time on a fresh project: none. A project created with gcloud
# or Terraform starts with its APIs off (the console's default set is not something a stack may count on).
PLAN_TIME_APIS: frozenset[str] = frozenset()

# CMEK users: resource type prefix -> the service agent that encrypts and decrypts for it (a tuple: every one of
# those agents uses the key, and the resource must depend on each one's grant).
CMEK_AGENTS: dict[str, str | tuple[str, ...]] = {
    "google_artifact_registry_repository": "artifactregistry",
    "google_bigquery_": "bigquery",
    "google_pubsub_topic": "pubsub",
    "google_storage_bucket": "storage",
    "google_vertex_ai_": "aiplatform",
    "google_workbench_instance": ("compute", "notebooks"),  # Compute Engine writes the disks the Notebooks agent makes
    # the starter function: its source, image and instances (Google's CMEK page for Cloud Run functions), and the
    # pipeline runs it creates, which Vertex AI's agent encrypts
    "google_cloudfunctions2_function": ("cloudfunctions", "run", "artifactregistry", "storage", "aiplatform"),
}
# Service agent -> what creates it: a google_project_service_identity for that API, a data source that does, or (the
# Compute Engine agent, which the API refuses to generate on request) the API's enablement. From Google's table of
# service agents, copied once into infra/data/service_agents.json with its source.
AGENT_SOURCES = {
    agent: (fact["terraform_source"], None if fact["terraform_source"].startswith("data.") else fact["api"])
    for agent, fact in provider_facts.service_agents().items()
}
KEY_USER_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
HAND_WRITTEN_AGENT = re.compile(r"gcp-sa-|@system\.gserviceaccount\.com|@bigquery-encryption\.iam|gs-project-accounts")
GRANTING_ROLES = frozenset({"roles/resourcemanager.projectIamAdmin", "roles/iam.securityAdmin", "roles/owner"})
REFERENCE = re.compile(r"\$\{(data\.)?([a-z][a-z0-9_]*)\.([A-Za-z0-9_-]+)")
CMEK_VALUE = re.compile(r"/cryptoKeys/|\$\{google_kms_crypto_key\.")


@dataclass
class Node:
    address: str  # `type.name` or `data.type.name`
    type: str
    body: dict
    edges: set[str] = field(default_factory=set)

    @property
    def is_data(self) -> bool:
        return self.address.startswith("data.")


def _strings(value, skip=("//", "depends_on")) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from _strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, skip)


class Graph:
    def __init__(self, document: dict):
        self.document = document
        self.nodes: dict[str, Node] = {}
        for prefix, section in (("", "resource"), ("data.", "data")):
            for resource_type, resources in document.get(section, {}).items():
                for name, body in resources.items():
                    address = f"{prefix}{resource_type}.{name}"
                    self.nodes[address] = Node(address, resource_type, body)
        for node in self.nodes.values():
            node.edges.update(d for d in node.body.get("depends_on", []) if d in self.nodes)
            for text in _strings(node.body):
                for data, kind, name in REFERENCE.findall(text):
                    target = f"{'data.' if data else ''}{kind}.{name}"
                    if target in self.nodes and target != node.address:
                        node.edges.add(target)

    def resources(self) -> Iterator[Node]:
        return (n for n in self.nodes.values() if not n.is_data)

    def ancestors(self, address: str) -> set[str]:
        """Every node `address` depends on, directly or transitively."""
        seen: set[str] = set()
        stack = [address]
        while stack:
            for edge in self.nodes[stack.pop()].edges:
                if edge not in seen:
                    seen.add(edge)
                    stack.append(edge)
        return seen

    def enabled_apis(self) -> dict[str, str]:
        """API -> the google_project_service node that enables it."""
        return {n.body["service"]: n.address for n in self.resources() if n.type == "google_project_service"}


def _by_prefix(table: dict, resource_type: str):
    matches = [prefix for prefix in table if resource_type.startswith(prefix)]
    return table[max(matches, key=len)] if matches else None


Outcome = tuple[str, str | None]  # (resource address, problem or None when it passes)


def api_dependencies(graph: Graph) -> Iterator[Outcome]:
    """Every resource whose API the stack enables depends on that google_project_service."""
    enabled = graph.enabled_apis()
    for node in graph.resources():
        if not node.type.startswith("google_") or node.type == "google_project_service":
            continue
        api = _by_prefix(RESOURCE_APIS, node.type)
        if api is None:
            yield node.address, f"no API known for {node.type}: add its prefix to RESOURCE_APIS"
        elif api in enabled and enabled[api] not in graph.ancestors(node.address):
            yield node.address, f"calls {api}, which {enabled[api]} enables, but does not depend on it"
        else:
            yield node.address, None


def plan_time_reads(graph: Graph) -> Iterator[Outcome]:
    """A data source without dependencies is read at plan time: it must need no API a fresh project lacks."""
    for node in graph.nodes.values():
        if not node.is_data or not node.type.startswith("google_"):
            continue
        if node.type not in DATA_SOURCE_APIS:
            yield node.address, f"no API known for data source {node.type}: add it to DATA_SOURCE_APIS"
            continue
        api = DATA_SOURCE_APIS[node.type]
        if node.edges or api is None or api in PLAN_TIME_APIS:
            yield node.address, None
        else:
            yield (
                node.address,
                (
                    f"read at plan time (no dependency) but needs {api}, which a fresh project has off: "
                    "add depends_on on the google_project_service that enables it"
                ),
            )


def _agent_source(graph: Graph, agent: str) -> set[str]:
    kind, api = AGENT_SOURCES[agent]
    return {
        n.address
        for n in graph.nodes.values()
        if (f"data.{n.type}" if n.is_data else n.type) == kind and (api is None or n.body.get("service") == api)
    }


def cmek_agent_grants(graph: Graph) -> Iterator[Outcome]:
    """Every CMEK user depends on the key grant of its service agent, and that agent is created in code."""
    grants = {
        n.address: n
        for n in graph.resources()
        if n.type in ("google_kms_crypto_key_iam_member", "google_kms_crypto_key_iam_binding")
    }
    for address, grant in grants.items():
        members = [grant.body.get("member", ""), *grant.body.get("members", [])]
        if any(HAND_WRITTEN_AGENT.search(m) for m in members):
            yield (
                address,
                (
                    "names a service agent by hand: Google creates agents lazily, so use the email of a "
                    "google_project_service_identity (or the data source that creates the agent)"
                ),
            )
        else:
            yield address, None
    for node in graph.resources():
        if node.type.startswith("google_kms_") or not any(CMEK_VALUE.search(s) for s in _strings(node.body)):
            continue
        agents = _by_prefix(CMEK_AGENTS, node.type)
        if agents is None:
            yield node.address, f"uses a CMEK key, but no service agent is known for {node.type}: add to CMEK_AGENTS"
            continue
        ancestors = graph.ancestors(node.address)
        problems = []
        for agent in (agents,) if isinstance(agents, str) else agents:
            sources = _agent_source(graph, agent)
            granted = [
                g
                for g in ancestors
                if g in grants and grants[g].body.get("role") == KEY_USER_ROLE and grants[g].edges & sources
            ]
            if not sources:
                problems.append(f"uses a CMEK key, but nothing in the stack creates the {agent} service agent")
            elif not granted:
                problems.append(f"uses a CMEK key but does not depend on the {agent} service agent's key grant")
        yield node.address, "; ".join(problems) or None


def quota_project_override(graph: Graph) -> Iterator[Outcome]:
    """Only an alias used by billing resources alone may set user_project_override."""
    overriding = set()
    for name, configs in graph.document.get("provider", {}).items():
        for config in configs:
            if not config.get("user_project_override"):
                continue
            alias = config.get("alias")
            address = f"provider.{name}" + (f".{alias}" if alias else "")
            if alias:
                overriding.add(f"{name}.{alias}")
                yield address, None
            else:
                yield (
                    address,
                    (
                        "the default provider sets user_project_override: every request would name the project as "
                        "quota project; move it to an alias used by billing resources only"
                    ),
                )
    for node in graph.resources():
        if node.body.get("provider") in overriding:
            is_billing = node.type.startswith("google_billing_")
            yield node.address, None if is_billing else f"uses the quota-override provider {node.body['provider']}"


GRANT_LIMIT = re.compile(
    r"api\.getAttribute\(['\"]iam\.googleapis\.com/modifiedGrantsByRole['\"], \[\]\)\.hasOnly\((\[[^\]]*\])\)"
)


def _grant_limit_problem(expression: str) -> str | None:
    """Why a condition does not limit the roles a binding may grant, or None when it does: the documented form
    `api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([...])`, alone (a condition that
    merely mentions the attribute, or ORs it with anything, limits nothing), listing no role that can grant."""
    found = GRANT_LIMIT.fullmatch(expression.strip())
    if found is None:
        return "is not limited to `api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([...])`"
    try:
        roles = json.loads(found.group(1).replace("'", '"'))
    except ValueError:
        return f"lists roles that are not a list of quoted names: {found.group(1)}"
    escalating = sorted(set(roles) & GRANTING_ROLES)
    return f"may grant {escalating}, which can grant any role" if escalating else None


def conditional_granting_roles(graph: Graph) -> Iterator[Outcome]:
    """A project role binding that can grant roles carries an IAM condition limiting what it may grant."""
    for node in graph.resources():
        if not node.type.startswith("google_project_iam_") or node.body.get("role") not in GRANTING_ROLES:
            continue
        expression = (node.body.get("condition") or {}).get("expression", "")
        if not expression:
            yield (
                node.address,
                (
                    f"{node.body['role']} without a condition on iam.googleapis.com/modifiedGrantsByRole can grant any "
                    "role, owner included"
                ),
            )
            continue
        problem = _grant_limit_problem(expression)
        yield node.address, None if problem is None else f"{node.body['role']}: its condition {problem}"


def deletion_arguments_set(graph: Graph) -> Iterator[Outcome]:
    """Every deletion-guard argument the provider binding of a resource type has is set explicitly (the teardown
    policy decides it): the list of such types is read from the installed bindings, so a type added tomorrow is
    covered, and an unset `deletion_protection` whose provider default is true cannot reach a destroy."""
    for node in graph.resources():
        arguments = provider_facts.deletion_arguments(node.type)
        if not arguments:
            continue
        unset = [a for a in arguments if a.name not in node.body]
        if unset:
            defaults = ", ".join(f"{a.name} (provider default {str(a.default).lower()})" for a in unset)
            yield node.address, f"leaves {defaults} unset: set it from infra/teardown.py TeardownPolicy.argument"
        else:
            yield node.address, None


@dataclass(frozen=True)
class GraphPolicy:
    id: str
    name: str
    check: Callable[[Graph], Iterator[Outcome]]


POLICIES = (
    GraphPolicy("CKV2_FMNIST_G1", "Every resource depends on the google_project_service of its API", api_dependencies),
    GraphPolicy("CKV2_FMNIST_G2", "Data sources read at plan time need no API a fresh project lacks", plan_time_reads),
    GraphPolicy(
        "CKV2_FMNIST_G3",
        "CMEK users depend on their service agent's key grant; agents created in code",
        cmek_agent_grants,
    ),
    GraphPolicy(
        "CKV2_FMNIST_G4", "Only a billing-only provider alias sets user_project_override", quota_project_override
    ),
    GraphPolicy("CKV2_FMNIST_G5", "Role bindings that can grant roles carry a condition", conditional_granting_roles),
    GraphPolicy(
        "CKV2_FMNIST_G6",
        "Every deletion argument of the provider binding is set from the teardown policy",
        deletion_arguments_set,
    ),
)


@dataclass(frozen=True)
class GraphResult:
    stack: str
    check_id: str
    check_name: str
    resource: str
    problem: str | None


def evaluate_stack(stack: str, document: dict) -> list[GraphResult]:
    graph = Graph(document)
    return [
        GraphResult(stack, policy.id, policy.name, resource, problem)
        for policy in POLICIES
        for resource, problem in policy.check(graph)
    ]


def evaluate_outdir(outdir: Path) -> list[GraphResult]:
    """Every graph policy over every `stacks/<stack>/cdk.tf.json` under `outdir`."""
    results = []
    for stack_file in sorted(outdir.glob("stacks/*/cdk.tf.json")):
        results += evaluate_stack(stack_file.parent.name, json.loads(stack_file.read_text()))
    return results
