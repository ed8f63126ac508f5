"""Policy: only the promoter can write the registry index (issue 25), checked on the synthesized stacks.

Why a policy of its own and not a checkov YAML rule: the answer depends on who holds a write role on the models
bucket, at project level, and under which IAM condition, across the bootstrap and main stacks together.
Why IAM conditions on object names rather than a bucket of its own for the index: the model reference
`<models root>@<alias>` resolves `<root>/registry/index.json` (docs/CONTRACTS.md), which the service, the trainer
and the notebooks share; a second bucket would change that contract for every reader, while a condition only
narrows the writers. Defence in depth: the signature (contracts/index_signature.py) already makes a written index
harmless without the signing key; this keeps uploaders from writing it at all.
Rule: a role that can write objects on the models bucket (or every bucket, at project level) must be held by the
promoter, carry a condition limiting it to a prefix outside `registry/`, or be one of ALLOWED with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from contracts.cloud import PIPELINE_ACCOUNT_SUFFIXES, SERVICE_ACCOUNT_SUFFIXES

PROMOTER = "pipelines"  # the account whose pipeline step registers and promotes, and alone may sign
ALLOWED = {
    "deployer": "runs `cdktf deploy`, which creates and administers the buckets (roles/storage.admin); it cannot "
    "sign an index (no role on the bootstrap stack's signing key), so an index it wrote would be refused",
}
WRITE_ROLES = frozenset(
    {
        "roles/storage.admin",
        "roles/storage.objectAdmin",
        "roles/storage.objectCreator",
        "roles/storage.objectUser",
        "roles/storage.legacyBucketWriter",
        "roles/storage.legacyBucketOwner",
        "roles/owner",
        "roles/editor",
    }
)
IAM_TYPES = ("google_storage_bucket_iam_member", "google_storage_bucket_iam_binding", "google_project_iam_member")
_PREFIX = re.compile(r'resource\.name\.startsWith\("projects/_/buckets/[^/"]+/objects/([^"]*)"\)')


def _account(member: str) -> str:
    """The stack account a member names (`accounts_<role>_` token or `<prefix>-<role>@` email), else the member."""
    token = re.search(r"accounts_([a-z]+)_[0-9A-F]{8}", member)
    if token:
        return token.group(1)
    local = member.removeprefix("serviceAccount:").split("@", 1)[0]
    suffixes = {**SERVICE_ACCOUNT_SUFFIXES, **PIPELINE_ACCOUNT_SUFFIXES, "planner": "planner", "workbench": "workbench"}
    for role, suffix in sorted(suffixes.items(), key=lambda item: -len(item[1])):  # pl-starter before starter
        if local.endswith("-" + suffix):
            return role
    return member


def _limited_outside_registry(condition: dict | None) -> bool:
    """True when the condition allows object names under given prefixes only, none of them under registry/."""
    expression = (condition or {}).get("expression", "")
    prefixes = _PREFIX.findall(expression)
    unrestricted = re.sub(
        r'resource\.type == "storage\.googleapis\.com/Bucket"|\|\||\s', "", _PREFIX.sub("", expression)
    )
    return bool(prefixes) and not unrestricted and not any(p.startswith("registry") or p == "" for p in prefixes)


def problems(stacks: dict[str, dict], models_bucket: str) -> Iterator[str]:
    """One message per principal that could write `<models bucket>/registry/index.json` and may not."""
    for stack_name, stack in sorted(stacks.items()):
        for resource_type in IAM_TYPES:
            for key, body in stack.get("resource", {}).get(resource_type, {}).items():
                if body.get("role") not in WRITE_ROLES:
                    continue
                if resource_type != "google_project_iam_member":
                    bucket = str(body.get("bucket", ""))
                    if models_bucket not in bucket and "storage_models" not in bucket:
                        continue
                members = body.get("members") or [body.get("member", "")]
                for member in members:
                    who = _account(str(member))
                    if who == PROMOTER or who in ALLOWED or _limited_outside_registry(body.get("condition")):
                        continue
                    yield (
                        f"{stack_name}: {resource_type}.{key} lets {who} write {models_bucket}/registry/index.json "
                        f"({body['role']}); only {PROMOTER} may: limit it with an IAM condition on object names "
                        "outside registry/ (infra/components/storage.py does for the trainer)"
                    )
