"""A simulated `terraform plan`, `apply` and `destroy` over a synthesized `cdk.tf.json`: what would fail on a new
project, found without Terraform, provider binaries or a cloud account.

Why: Terraform cannot run here, and the first-deploy defects of this project were all of one kind: something used
before Google Cloud had made it usable (an API, a service agent, an IAM grant, a metric) or a delete the provider
refuses. Terraform creates resources in parallel, so a resource may count only on what it depends on (directly or
transitively): the walks judge each resource against its own ancestors.

- plan: every provider configures without a local daemon unless its stack holds nothing else; the account that
  plans holds the read permission of every resource type, and `serviceusage.services.use` when a provider sets a
  quota project (infra/data/read_permissions.json); the deployer, which plans before it applies, holds the read
  permission of every data source (in the project, or on the one KMS key a key's data source reads).
- apply (new project, only the APIs the bootstrap stack enabled): an API is usable after its
  `google_project_service` (and, for a quota-project provider, after a wait); a service agent exists after its
  identity resource or data source (infra/data/service_agents.json); an IAM grant is usable after a `time_sleep`
  that follows it; a user-defined metric exists after its declaration (or the condition is PromQL).
- destroy (reverse order): deletion guards from the provider bindings (infra/provider_facts.py), non-empty buckets
  without `force_destroy`, datasets without `delete_contents_on_destroy`, the endpoint's deployed models, KMS key
  rings and keys (never deleted), soft delete.

Each step names the resource and, when it would fail, why. `python -m infra.scan` reports them with the policies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra import provider_facts
from infra.graph_policies import CMEK_AGENTS, CMEK_VALUE, RESOURCE_APIS, Graph, GraphResult, _by_prefix, _strings
from infra.naming import stack_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT = "time_sleep"
KMS_GRANTS = ("google_kms_crypto_key_iam_member", "google_kms_crypto_key_iam_binding")
KEY_USER_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
# Roles the account of a resource must hold before the resource is created: (type, condition) -> roles.
ACCOUNT_ROLES = {"google_eventarc_trigger": ("roles/eventarc.eventReceiver",)}
WORKFLOW_INVOKER = "roles/workflows.invoker"
METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
# The repository's destroy paths: each must undeploy the SDK's models and refuse while any remain.
DESTROY_PATHS = ("Makefile", "cloudbuild-deploy.yaml")
ENDPOINT_GUARD = "infra.endpoint_guard"

# check ids in the scan's report, one per walk
RULES = {
    "plan": ("CKV2_FMNIST_S1", "Simulated plan: providers configure offline; the planner can read every resource"),
    "apply": ("CKV2_FMNIST_S2", "Simulated apply on a new project: APIs, agents, grants, metrics usable when used"),
    "destroy": ("CKV2_FMNIST_S3", "Simulated destroy: no delete precondition fails"),
}


@dataclass(frozen=True)
class Step:
    walk: str  # plan | apply | destroy
    resource: str
    problem: str | None = None
    note: str = ""


def _waited(graph: Graph, ancestors: set[str], target: str) -> bool:
    """A `time_sleep` the resource depends on comes after `target`."""
    return any(graph.nodes[a].type == WAIT and target in graph.ancestors(a) for a in ancestors)


def _agent_sources(graph: Graph, agent: str) -> set[str]:
    fact = provider_facts.service_agents()[agent]
    kind, api = fact["terraform_source"], fact["api"]
    return {
        n.address
        for n in graph.nodes.values()
        if (f"data.{n.type}" if n.is_data else n.type) == kind
        and (kind == "data." + n.type or n.body.get("service") == api)
    }


def _grant_use(graph: Graph, ancestors: set[str], grant: str, what: str) -> str | None:
    if grant not in ancestors:
        return f"{what} ({grant}) is not made before it"
    if not _waited(graph, ancestors, grant):
        return (
            f"{what} ({grant}) is used right after it is made: IAM takes up to minutes to propagate and the "
            "provider does not retry (provider issues 15415, 5103); depend on a time_sleep after the grant"
        )
    return None


# ---- plan ----------------------------------------------------------------------------------------------------------
def _granted_to(bootstrap: dict, account_suffix: str):
    """A test of a grant's body: is its member the bootstrap stack's account whose id ends in `account_suffix`?"""
    accounts = bootstrap.get("resource", {}).get("google_service_account", {})
    names = [name for name, body in accounts.items() if str(body.get("account_id", "")).endswith(account_suffix)]

    def granted(body: dict) -> bool:
        return any(f"google_service_account.{name}." in str(body.get("member", "")) for name in names)

    return granted


def _planner_roles(bootstrap: dict) -> set[str]:
    """The planner's roles in its bootstrap stack (project and billing account grants)."""
    to_planner = _granted_to(bootstrap, "-planner")
    roles = set()
    for resource_type in ("google_project_iam_member", "google_billing_account_iam_member"):
        for body in bootstrap.get("resource", {}).get(resource_type, {}).values():
            if to_planner(body):
                roles.add(body["role"])
    return roles


def _deployer_grants(bootstrap: dict) -> tuple[set[str], dict[str, set[str]]]:
    """The deployer's project roles in its bootstrap stack, and its roles on single KMS keys there (key name ->
    roles): `cdktf deploy` plans before it applies, so the deployer reads every data source of its stacks too."""
    resources = bootstrap.get("resource", {})
    is_deployer = _granted_to(bootstrap, "-deployer")
    project = {b["role"] for b in resources.get("google_project_iam_member", {}).values() if is_deployer(b)}
    key_names = {address: body.get("name") for address, body in resources.get("google_kms_crypto_key", {}).items()}
    on_keys: dict[str, set[str]] = {}
    for resource_type in KMS_GRANTS:
        for body in resources.get(resource_type, {}).values():
            key = re.fullmatch(r"\$\{google_kms_crypto_key\.([^.]+)\.id\}", str(body.get("crypto_key_id", "")))
            if key and is_deployer(body) and key_names.get(key.group(1)):
                on_keys.setdefault(str(key_names[key.group(1)]), set()).add(body["role"])
    return project, on_keys


def simulate_deployer_reads(graph: Graph, project_roles: set[str], key_roles: dict[str, set[str]]) -> Iterator[Step]:
    """The deployer's plan (before every apply) reads each data source: it must hold the read permission, in the
    project or, for a data source of one KMS key (`crypto_key` ends in /cryptoKeys/<name>), on that key."""
    granted = set().union(*(provider_facts.role_permissions(role) for role in project_roles))
    for node in graph.nodes.values():
        if not node.is_data or not node.type.startswith("google_"):
            continue
        known, permission = provider_facts.read_permission(f"data.{node.type}")
        if not known or not permission:
            continue  # unknown kinds are reported by the planner's walk
        key = str(node.body.get("crypto_key", "")).rsplit("/cryptoKeys/", 1)
        on_key = key_roles.get(key[1], set()) if len(key) == 2 else set()
        held = granted | set().union(*(provider_facts.role_permissions(role) for role in on_key))
        yield Step(
            "plan",
            f"deployer:{permission}",
            None
            if permission in held
            else f"the deployer's roles ({', '.join(sorted(project_roles | on_key))}) lack {permission}, needed for "
            f"{node.address} when `cdktf deploy` plans: grant it in the bootstrap stack, on the one resource it reads",
        )


def pull_request_plan_refreshes(build_file: Path = REPO_ROOT / "cloudbuild-plan.yaml") -> bool:
    """Whether the planner's `cdktf diff` refreshes managed resources: not when the shipped build definition passes
    `-refresh=false` (issue 25: pull-request code runs as the planner, so it reads the state, not every live
    resource); then only data sources are read at plan, and only they need the planner's read permissions."""
    return "-refresh=false" not in build_file.read_text()


def simulate_plan(graph: Graph, planner_roles: set[str] | None = None, *, refresh: bool = True) -> Iterator[Step]:
    providers = graph.document.get("provider", {})
    docker = [n for n in graph.resources() if n.type.startswith("docker_")]
    others = len(list(graph.resources())) - len(docker)
    for node in docker:  # each makes Terraform configure the docker provider
        yield Step(
            "plan",
            node.address,
            (
                "uses the docker provider, which pings a Docker daemon when it is configured: planning or destroying "
                f"the {others} other resources of this stack needs a daemon; give the images a stack of their own"
            )
            if others
            else None,
        )
    if planner_roles is None:
        return
    granted = set().union(*(provider_facts.role_permissions(role) for role in planner_roles))
    needed: dict[str, str] = {}
    for node in graph.nodes.values():
        if not refresh and not node.is_data:
            continue
        kind = f"data.{node.type}" if node.is_data else node.type
        known, permission = provider_facts.read_permission(kind)
        if not known:
            yield Step("plan", node.address, f"no read permission known for {kind}: add it to read_permissions.json")
        elif permission:
            needed.setdefault(permission, node.address)
    if any(c.get("user_project_override") for configs in providers.values() for c in configs):
        needed[provider_facts.quota_project_permission()] = "provider.google (user_project_override)"
    for permission, first in sorted(needed.items()):
        yield Step(
            "plan",
            f"planner:{permission}",
            None
            if permission in granted
            else f"the planner's roles ({', '.join(sorted(planner_roles))}) lack {permission}, needed for {first}",
        )


# ---- apply ---------------------------------------------------------------------------------------------------------
def _quota_provider_aliases(graph: Graph) -> set[str]:
    return {
        f"{name}.{c['alias']}"
        for name, configs in graph.document.get("provider", {}).items()
        for c in configs
        if c.get("user_project_override") and c.get("alias")
    }


def _metric_problems(graph: Graph, node, ancestors: set[str]) -> list[str]:
    declared = {graph.nodes[a].body.get("type") for a in ancestors if graph.nodes[a].type.endswith("metric_descriptor")}
    declared |= {
        f"logging.googleapis.com/user/{graph.nodes[a].body.get('name')}"
        for a in ancestors
        if graph.nodes[a].type == "google_logging_metric"
    }
    problems = []
    for condition in node.body.get("conditions", []):
        for kind in ("condition_threshold", "condition_absent"):
            block = condition.get(kind) or {}
            for key in ("filter", "denominator_filter"):
                for metric in METRIC_TYPE.findall(block.get(key, "")):
                    if provider_facts.is_user_defined_metric(metric) and metric not in declared:
                        problems.append(
                            f"condition '{condition.get('display_name')}' names {metric}, which Cloud Monitoring "
                            "registers only at its first point: creating the policy on a new project fails with 404 "
                            "'Cannot find metric(s)'; use condition_prometheus_query_language or declare the metric"
                        )
    return problems


def simulate_apply(graph: Graph, initial_apis: frozenset[str] = frozenset()) -> Iterator[Step]:
    enabled = graph.enabled_apis()
    quota_aliases = _quota_provider_aliases(graph)
    kms_grants = {
        n.address: n for n in graph.resources() if n.type in KMS_GRANTS and n.body.get("role") == KEY_USER_ROLE
    }
    project_grants = [n for n in graph.resources() if n.type == "google_project_iam_member"]
    for node in graph.resources():
        ancestors = graph.ancestors(node.address)
        problems: list[str] = []
        api = _by_prefix(RESOURCE_APIS, node.type) if node.type.startswith("google_") else None
        if api and node.type != "google_project_service" and api not in initial_apis:
            if api not in enabled or enabled[api] not in ancestors:
                problems.append(f"calls {api}, which is off on a new project and not enabled before it")
            elif node.body.get("provider") in quota_aliases and not _waited(graph, ancestors, enabled[api]):
                problems.append(
                    f"its provider sends the project as quota project (user_project_override), whose {api} was "
                    f"enabled seconds before by {enabled[api]}: enablement takes minutes to propagate; wait for it"
                )
        agents = list(provider_facts.agents_relied_on(node.type))
        if not node.type.startswith("google_kms_") and any(CMEK_VALUE.search(s) for s in _strings(node.body)):
            cmek = _by_prefix(CMEK_AGENTS, node.type) or ()
            for agent in (cmek,) if isinstance(cmek, str) else cmek:
                sources = _agent_sources(graph, agent)
                grants = [g for g, body in kms_grants.items() if body.edges & sources]
                if not grants:
                    problems.append(f"uses the CMEK key, but the {agent} service agent is never granted it")
                for grant in grants:
                    problem = _grant_use(graph, ancestors, grant, f"the {agent} agent's key grant")
                    if problem:
                        problems.append(problem)
        for agent in agents:
            if not _agent_sources(graph, agent) & ancestors:
                email = provider_facts.service_agents()[agent]["email"]
                problems.append(
                    f"needs the {agent} service agent ({email}), which Google creates lazily: nothing before it "
                    f"creates it ({provider_facts.service_agents()[agent]['terraform_source']})"
                )
        account = node.body.get("service_account")
        if node.type in ACCOUNT_ROLES and account:
            roles = list(ACCOUNT_ROLES[node.type])
            if "workflow" in (node.body.get("destination") or {}):
                roles.append(WORKFLOW_INVOKER)
            for role in roles:
                grants = [
                    g.address for g in project_grants if g.body.get("role") == role and account in g.body["member"]
                ]
                if not grants:
                    problems.append(f"its account {account} is never granted {role}")
                for grant in grants:
                    problem = _grant_use(graph, ancestors, grant, f"{role} of its account")
                    if problem:
                        problems.append(problem)
        criteria = {c.get("attribute"): c.get("value") for c in node.body.get("matching_criteria", [])}
        if node.type == "google_eventarc_trigger" and criteria.get("type") == GCS_FINALIZED:
            storage = _agent_sources(graph, "storage")
            grants = [
                g.address
                for g in project_grants
                if g.body.get("role") == "roles/pubsub.publisher" and g.edges & storage
            ]
            if not grants:
                problems.append("the Cloud Storage agent is never granted roles/pubsub.publisher")
            for grant in grants:
                problem = _grant_use(graph, ancestors, grant, "the Cloud Storage agent's pubsub.publisher grant")
                if problem:
                    problems.append(problem)
        if node.type == "google_monitoring_alert_policy":
            problems += _metric_problems(graph, node, ancestors)
        yield Step("apply", node.address, "; ".join(problems) or None)


# ---- destroy -------------------------------------------------------------------------------------------------------
def _destroy_paths_guard_the_endpoint(root: Path = REPO_ROOT) -> bool:
    paths = [root / p for p in DESTROY_PATHS]
    return all(p.is_file() and ENDPOINT_GUARD in p.read_text() for p in paths)


def simulate_destroy(graph: Graph, *, protect: bool | None, bootstrap: bool) -> Iterator[Step]:
    """Reverse dependency order. `protect`: the environment's infra.deletion_protection (None: unknown); an explicit
    guard that blocks is the intended refusal of a protected environment, an unset default never is."""
    for node in reversed(_topological(graph)):
        body, problems, notes = node.body, [], []
        for argument in provider_facts.deletion_arguments(node.type):
            value = body.get(argument.name)
            explicit = value is not None
            value = argument.default if value is None else value in (True, "true")
            blocks = value if argument.name == "deletion_protection" else not value
            if argument.name == "disable_on_destroy":
                if value:
                    problems.append(
                        "disable_on_destroy is "
                        + ("true" if explicit else "unset (the provider's default is true)")
                        + ": destroy switches the API off, which fails while other services depend on it"
                    )
                continue
            if argument.name == "force_destroy" and node.type != "google_storage_bucket" and not explicit:
                blocks = False  # only a bucket is assumed to hold data the stack did not create
            if argument.name == "delete_contents_on_destroy" or argument.name == "force_destroy":
                state = "false" if explicit else "unset (false)"
                reason = f"{argument.name} is {state}: the delete fails while it holds data"
            else:
                reason = "deletion_protection is " + (
                    "true" if explicit else "unset and the provider's default is true (" + argument.doc[:60] + "...)"
                )
            if not blocks:
                continue
            if explicit and protect:
                notes.append(f"refused as intended: {reason}")
            else:
                problems.append(reason)
        if (body.get("lifecycle") or {}).get("prevent_destroy"):
            (notes if protect else problems).append("lifecycle.prevent_destroy fails the destroy plan")
        if node.type in ("google_kms_key_ring", "google_kms_crypto_key"):
            if bootstrap:
                notes.append("never deleted by Google: removed from state, versions scheduled for destruction")
            else:
                problems.append(
                    "Google never deletes key rings or keys: the next deploy of this stack gets 409; keep it in the "
                    "bootstrap stack"
                )
        if node.type == "google_vertex_ai_endpoint":
            if _destroy_paths_guard_the_endpoint():
                notes.append("models the SDK deployed are undeployed first (make destroy / cloudbuild-deploy.yaml)")
            else:
                problems.append(
                    "an endpoint with deployed models cannot be deleted: every destroy path must run undeploy-all "
                    f"and {ENDPOINT_GUARD} first"
                )
        if node.type == "google_storage_bucket":
            notes.append("soft-deleted objects stay billed for the retention period (bucket default 7 days)")
        yield Step("destroy", node.address, "; ".join(problems) or None, "; ".join(notes))


def _topological(graph: Graph) -> list:
    """Resources in an order Terraform could create them (dependencies first)."""
    order, seen = [], set()

    def visit(address: str) -> None:
        if address in seen:
            return
        seen.add(address)
        for edge in sorted(graph.nodes[address].edges):
            visit(edge)
        if not graph.nodes[address].is_data:
            order.append(graph.nodes[address])

    for address in sorted(graph.nodes):
        visit(address)
    return order


# ---- stacks --------------------------------------------------------------------------------------------------------
def _environment_protection(env: str) -> bool | None:
    from settings import ConfigError, load_config

    try:
        return load_config(env).infra.deletion_protection
    except (ConfigError, OSError, ValueError):
        return None


def simulate_stack(
    stack: str,
    document: dict,
    *,
    bootstrap_document: dict | None = None,
    protect: bool | None = None,
    refresh: bool | None = None,
) -> list[Step]:
    """`refresh` None: as the shipped pull-request plan runs (`pull_request_plan_refreshes`)."""
    graph = Graph(document)
    is_bootstrap = stack.startswith("bootstrap-")
    initial_apis: frozenset[str] = frozenset()
    planner_roles = None
    deployer: list[Step] = []
    if bootstrap_document is not None:
        initial_apis = frozenset(Graph(bootstrap_document).enabled_apis())
        planner_roles = _planner_roles(bootstrap_document)
        deployer = list(simulate_deployer_reads(graph, *_deployer_grants(bootstrap_document)))
    return [
        *simulate_plan(graph, planner_roles, refresh=pull_request_plan_refreshes() if refresh is None else refresh),
        *deployer,
        *simulate_apply(graph, initial_apis),
        *simulate_destroy(graph, protect=protect, bootstrap=is_bootstrap),
    ]


def simulate_outdir(outdir: Path) -> dict[str, list[Step]]:
    """Every stack under `outdir/stacks`; each stack of an environment (`<env>`, `images-<env>`, `serving-<env>`)
    starts from what its bootstrap stack made."""
    documents = {p.parent.name: json.loads(p.read_text()) for p in sorted(outdir.glob("stacks/*/cdk.tf.json"))}
    results = {}
    for stack, document in documents.items():
        env = stack_environment(stack)
        bootstrap = None if stack.startswith("bootstrap-") else documents.get(f"bootstrap-{env}")
        results[stack] = simulate_stack(
            stack, document, bootstrap_document=bootstrap, protect=_environment_protection(env)
        )
    return results


def evaluate_outdir(outdir: Path) -> list[GraphResult]:
    """The simulated walks as scan results (one check id per walk), judged like the graph policies."""
    return [
        GraphResult(stack, *RULES[step.walk], step.resource, step.problem)
        for stack, steps in simulate_outdir(outdir).items()
        for step in steps
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=Path("cdktf.out"))
    parser.add_argument("--verbose", action="store_true", help="print passing steps and their notes too")
    args = parser.parse_args(argv)
    failed = 0
    for stack, steps in simulate_outdir(args.outdir).items():
        bad = [s for s in steps if s.problem]
        failed += len(bad)
        print(f"{stack}: {len(steps)} steps, {len(bad)} would fail")
        for step in steps:
            if step.problem or args.verbose:
                status = "FAIL" if step.problem else "ok"
                print(f"  {step.walk:7} {status:4} {step.resource}: {step.problem or step.note}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
