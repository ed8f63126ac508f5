"""Policy: the Vertex AI Custom Code Service Agent is denied the project's objects and tables (issue 25), checked on
the synthesized bootstrap stack (infra/components/vertex_agent.py says why a deny policy)."""

from __future__ import annotations

from collections.abc import Iterator

REQUIRED = ("storage.googleapis.com/objects.get", "storage.googleapis.com/objects.create")
AGENT_DOMAIN = "@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"


def problems(bootstrap: dict, project: str) -> Iterator[str]:
    """One message when no deny policy on `project` denies the custom code agent reading and writing objects."""
    parent = f"cloudresourcemanager.googleapis.com%2Fprojects%2F{project}"
    for body in bootstrap.get("resource", {}).get("google_iam_deny_policy", {}).values():
        if body.get("parent") != parent:
            continue
        for rule in body.get("rules", []):
            deny = rule.get("deny_rule", {})
            agent = any(AGENT_DOMAIN in p and p.startswith("principal://") for p in deny.get("denied_principals", []))
            denied = set(deny.get("denied_permissions", []))
            if agent and not deny.get("denial_condition") and all(p in denied for p in REQUIRED):
                return
    yield (
        f"no deny policy on project {project} denies the Vertex AI Custom Code Service Agent "
        f"(service-PROJECT_NUMBER{AGENT_DOMAIN}) {', '.join(REQUIRED)}: a custom job created without a service "
        "account would run as it and reach the buckets (infra/components/vertex_agent.py)"
    )
