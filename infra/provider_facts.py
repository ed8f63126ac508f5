"""Facts about the google provider and Google Cloud that the policies and the simulated apply/destroy check against,
read from their source instead of typed from memory.

- Deletion guards: which resource types have a `deletion_protection`, `force_destroy`, `delete_contents_on_destroy`
  or `disable_on_destroy` argument, and whether it blocks a destroy when unset, are read from the installed
  cdktf provider bindings (the generated `:param ...:` docstrings of each resource class, which carry the
  provider's own documentation, e.g. "Defaults to true"). A resource type added to a stack tomorrow is covered
  without an edit here. The files are read as text, not imported (importing them costs seconds; see
  infra/provider_loader.py).
- Service agents (infra/data/service_agents.json) and the planner's read permissions
  (infra/data/read_permissions.json): tables copied once from Google's documentation, each with its source.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
BINDING_PACKAGES = {"google_": "cdktf_cdktf_provider_google"}
# Arguments that decide whether `terraform destroy` of the resource can succeed (or what it also removes).
DELETION_ARGUMENTS = ("deletion_protection", "force_destroy", "delete_contents_on_destroy", "disable_on_destroy")
# Unset arguments whose provider default blocks or widens a destroy although the docstring does not say so:
# google_project_service.disable_on_destroy defaults to true in provider 6.x (its docstring is empty).
UNDOCUMENTED_DEFAULTS = {("google_project_service", "disable_on_destroy"): True}
_PARAM = re.compile(r":param (" + "|".join(DELETION_ARGUMENTS) + r"): ([^\n]*)")
# Metric type prefixes of user-defined metrics: Cloud Monitoring registers them at their first point (or from a
# descriptor), so a filter naming one fails with 404 on a new project. Sources: cloud.google.com/monitoring/api/v3/
# metric-model ("User-defined metrics"), cloud.google.com/stackdriver/docs/managed-prometheus (prometheus.*).
USER_DEFINED_METRIC_PREFIXES = (
    "custom.googleapis.com/",
    "external.googleapis.com/",
    "prometheus.googleapis.com/",
    "workload.googleapis.com/",
    "logging.googleapis.com/user/",
)


@dataclass(frozen=True)
class DeletionArgument:
    resource_type: str
    name: str
    doc: str

    @property
    def default(self) -> bool:
        """The provider's value when the argument is unset, as its documentation states it."""
        if (self.resource_type, self.name) in UNDOCUMENTED_DEFAULTS:
            return UNDOCUMENTED_DEFAULTS[(self.resource_type, self.name)]
        return "Defaults to true" in self.doc or "true or unset" in self.doc


def _binding_file(resource_type: str) -> Path | None:
    for prefix, package in BINDING_PACKAGES.items():
        if resource_type.startswith(prefix):
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                return None
            path = Path(next(iter(spec.submodule_search_locations))) / resource_type[len(prefix) :] / "__init__.py"
            return path if path.is_file() else None
    return None


@functools.cache
def deletion_arguments(resource_type: str) -> tuple[DeletionArgument, ...]:
    """The deletion-guard arguments of `resource_type`, from its installed binding (empty: none, or no binding)."""
    path = _binding_file(resource_type)
    if path is None:
        return ()
    found: dict[str, str] = {}
    for name, doc in _PARAM.findall(path.read_text()):
        found.setdefault(name, doc)
    return tuple(DeletionArgument(resource_type, name, doc) for name, doc in found.items())


def has_binding(resource_type: str) -> bool:
    return _binding_file(resource_type) is not None


@functools.cache
def _table(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def service_agents() -> dict[str, dict]:
    """agent -> {api, email, created, terraform_source} (infra/data/service_agents.json)."""
    return dict(_table("service_agents.json")["agents"])


def agents_relied_on(resource_type: str) -> tuple[str, ...]:
    """Service agents a resource type needs to exist before it is created (besides CMEK, handled per key use)."""
    return tuple(_table("service_agents.json")["relied_on_by"].get(resource_type, ()))


def read_permission(resource_type: str) -> tuple[bool, str | None]:
    """(known, permission): what refreshing one resource of this type needs (None: no Google Cloud read)."""
    table = _table("read_permissions.json")["resource_read_permissions"]
    return (resource_type in table, table.get(resource_type))


def role_permissions(role: str) -> frozenset[str]:
    return frozenset(_table("read_permissions.json")["role_permissions"].get(role, ()))


def quota_project_permission() -> str:
    return str(_table("read_permissions.json")["quota_project_permission"])


def is_user_defined_metric(metric_type: str) -> bool:
    return metric_type.startswith(USER_DEFINED_METRIC_PREFIXES)
