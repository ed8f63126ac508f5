"""Policy: only the promoter can write the registry index (issue 25), checked on the synthesized stacks.

Why a policy of its own and not a checkov YAML rule: the answer depends on who holds a write role on the models
bucket, at project level, and under which IAM condition, across the bootstrap and main stacks together.
Why IAM conditions on object names rather than a bucket of its own for the index: the model reference
`<models root>@<alias>` resolves `<root>/registry/index.json` (docs/CONTRACTS.md), which the service, the trainer
and the notebooks share; a second bucket would change that contract for every reader, while a condition only
narrows the writers. Defence in depth: the signature (contracts/index_signature.py) already makes a written index
harmless without the signing key; this keeps uploaders from writing it at all.
Rules: (1) a role that can write objects on the models bucket (or every bucket, at project level) must be held by
the promoter, carry a condition limiting it to a prefix outside `registry/`, or be one of ALLOWED with its reason;
(2) only the promoter may sign with the index key; (3) nobody but the deployer (ALLOWED_ACT_AS) may act as the
promoter, so no account that runs user-controlled code can run code as it (infra/components/promoter.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from contracts.cloud import PIPELINE_ACCOUNT_SUFFIXES, SERVICE_ACCOUNT_SUFFIXES

PROMOTER = "promoter"  # the account of the promotion jobs (infra/components/promoter.py): registers, gates, signs
ALLOWED = {
    "deployer": "runs `cdktf deploy`, which creates and administers the buckets (roles/storage.admin); it cannot "
    "sign an index (no role on the bootstrap stack's signing key), so an index it wrote would be refused",
}
ALLOWED_ACT_AS = {
    "deployer": "creates the promotion jobs, which run as the promoter; it already decides their code (it builds "
    "and pushes the trainer image from the main branch), so actAs adds no power over what the promoter runs",
}
SIGNING_ROLES = frozenset(
    {"roles/cloudkms.signerVerifier", "roles/cloudkms.signer", "roles/cloudkms.admin", "roles/owner", "roles/editor"}
)
ACT_AS_ROLES = frozenset(
    {
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.workloadIdentityUser",
        "roles/iam.serviceAccountAdmin",
        "roles/owner",
        "roles/editor",
    }
)
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
    """One message per principal that could write `<models bucket>/registry/index.json`, sign it or act as the
    promoter, and may not."""
    yield from _writers(stacks, models_bucket)
    yield from _signers(stacks)
    yield from _promoter_impersonators(stacks)


def _members(body: dict) -> list[str]:
    return [str(m) for m in (body.get("members") or [body.get("member", "")])]


def _signers(stacks: dict[str, dict]) -> Iterator[str]:
    """Rule 2: a signing role on the index key (or on every key, at project level) held by anyone but the promoter."""
    kinds = ("google_kms_crypto_key_iam_member", "google_kms_crypto_key_iam_binding", "google_project_iam_member")
    for stack_name, stack in sorted(stacks.items()):
        for resource_type in kinds:
            for key, body in stack.get("resource", {}).get(resource_type, {}).items():
                on_index_key = resource_type == "google_project_iam_member" or "index_signing" in str(
                    body.get("crypto_key_id", "")
                )
                if body.get("role") not in SIGNING_ROLES or not on_index_key:
                    continue
                for member in _members(body):
                    if (who := _account(member)) != PROMOTER:
                        yield (
                            f"{stack_name}: {resource_type}.{key} lets {who} sign the registry index "
                            f"({body['role']}); only {PROMOTER} may (infra/bootstrap.py IndexSigningKey signers)"
                        )


def _promoter_impersonators(stacks: dict[str, dict]) -> Iterator[str]:
    """Rule 3: actAs (or a token) on the promoter account, or on every account at project level, for anyone but
    ALLOWED_ACT_AS."""
    kinds = ("google_service_account_iam_member", "google_service_account_iam_binding", "google_project_iam_member")
    for stack_name, stack in sorted(stacks.items()):
        for resource_type in kinds:
            for key, body in stack.get("resource", {}).get(resource_type, {}).items():
                on_promoter = (
                    resource_type == "google_project_iam_member"
                    or _account(str(body.get("service_account_id", ""))) == PROMOTER
                )
                if body.get("role") not in ACT_AS_ROLES or not on_promoter:
                    continue
                for member in _members(body):
                    if (who := _account(member)) not in ALLOWED_ACT_AS:
                        yield (
                            f"{stack_name}: {resource_type}.{key} lets {who} act as the promoter ({body['role']}); "
                            "only the deployer may: an account that can run code as the promoter can promote"
                        )


def _writers(stacks: dict[str, dict], models_bucket: str) -> Iterator[str]:
    """Rule 1: writers of the index object."""
    for stack_name, stack in sorted(stacks.items()):
        for resource_type in IAM_TYPES:
            for key, body in stack.get("resource", {}).get(resource_type, {}).items():
                if body.get("role") not in WRITE_ROLES:
                    continue
                if resource_type != "google_project_iam_member":
                    bucket = str(body.get("bucket", ""))
                    if models_bucket not in bucket and "storage_models" not in bucket:
                        continue
                for member in _members(body):
                    who = _account(member)
                    if who == PROMOTER or who in ALLOWED or _limited_outside_registry(body.get("condition")):
                        continue
                    yield (
                        f"{stack_name}: {resource_type}.{key} lets {who} write {models_bucket}/registry/index.json "
                        f"({body['role']}); only {PROMOTER} may: limit it with an IAM condition on object names "
                        "outside registry/ (infra/components/storage.py does for the trainer)"
                    )
