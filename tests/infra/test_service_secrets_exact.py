"""The service's secrets (infra/components/service_secrets.py) and its metrics sidecar (metrics_export.py) on the
synthesized serving stacks, pinned exactly: each secret's id, replication, labels and destroy guard, the one accessor
grant per secret (the service's account), the write-only seed variables and their validation, the sidecar's
container and volume, the RunMonitoring document, what Cloud Run waits for and every Terraform address (a renamed
secret is a new secret: the service would start with an empty operator token or routing key)."""

from __future__ import annotations

import pytest

from infra.naming import Names
from tests.infra.conftest import ENVIRONMENTS

ADDRESSES = {
    "service-secrets/admin-token": "google_secret_manager_secret",
    "service-secrets/admin-token-accessor": "google_secret_manager_secret_iam_member",
    "service-secrets/admin-token-version": "google_secret_manager_secret_version",
    "service-secrets/routing-key": "google_secret_manager_secret",
    "service-secrets/routing-key-accessor": "google_secret_manager_secret_iam_member",
    "service-secrets/routing-key-version": "google_secret_manager_secret_version",
    "metrics-export/runmonitoring": "google_secret_manager_secret",
    "metrics-export/runmonitoring-accessor": "google_secret_manager_secret_iam_member",
    "metrics-export/runmonitoring-version": "google_secret_manager_secret_version",
}
DOCUMENT = """\
apiVersion: monitoring.googleapis.com/v1beta
kind: RunMonitoring
metadata:
  name: fmnist-service
spec:
  endpoints:
  - port: 8080
    path: /metrics
    interval: 60s
"""


def _secrets(synth, stack: str) -> dict[str, dict]:
    return {
        path: {k: v for k, v in body.items() if k != "//"}
        for path, (_, _, body) in synth.by_path(stack).items()
        if path.startswith(("service-secrets/", "metrics-export/"))
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_secret_is_the_service_s_alone_and_seeded_write_only(synth, env, settings_by_env):
    settings = settings_by_env[env]
    names, stack = Names.of(settings), f"serving-{env}"
    kinds = {p: kind for p, (kind, _, _) in synth.by_path(stack).items() if p in ADDRESSES}
    assert kinds == ADDRESSES
    found = _secrets(synth, stack)
    assert set(found) == set(ADDRESSES)
    service = names.account_member("service")
    api = synth.by_path(stack)["apis/secretmanager"][1]
    for suffix, variable in (
        ("admin-token", "service_admin_token"),
        ("routing-key", "service_routing_key"),
        ("runmonitoring", None),
    ):
        group = "metrics-export" if variable is None else "service-secrets"
        secret_path = f"{group}/{suffix}"
        assert found[secret_path] == {
            "secret_id": f"fmnist-predict-{suffix}",
            "replication": {"auto": {}},
            "labels": names.labels,
            "deletion_protection": settings.infra.deletion_protection,
            "depends_on": [api],
        }
        assert found[f"{secret_path}-accessor"] == {
            "secret_id": synth.ref(stack, secret_path, "id"),
            "role": "roles/secretmanager.secretAccessor",
            "member": service,
        }
        version = found[f"{secret_path}-version"]
        if variable is None:
            assert version == {"secret": synth.ref(stack, secret_path, "id"), "secret_data": DOCUMENT}
        else:
            assert version == {
                "secret": synth.ref(stack, secret_path, "id"),
                "secret_data_wo": f"${{var.{variable}}}",
                "secret_data_wo_version": 1,
            }
    variables = synth.stack(stack)["variable"]
    for suffix, variable in (("admin-token", "service_admin_token"), ("routing-key", "service_routing_key")):
        assert variables[variable] == {
            "description": f"first value of fmnist-predict-{suffix} (write-only: never in state or plan)",
            "ephemeral": True,
            "nullable": False,
            "sensitive": True,
            "type": "string",
            "validation": [
                {
                    "condition": f"${{length(var.{variable}) >= 24}}",
                    "error_message": f"TF_VAR_{variable} must be a random string of at least 24 characters "
                    "(the deploy step generates one)",
                }
            ],
        }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cloud_run_reads_the_secrets_latest_versions_and_mounts_the_sidecar_s_document(synth, env):
    stack = f"serving-{env}"
    run = synth.one(stack, "google_cloud_run_v2_service")
    service, sidecar = run["template"]["containers"]
    assert [e for e in service["env"] if "value_source" in e] == [
        {
            "name": name,
            "value_source": {
                "secret_key_ref": {
                    "secret": synth.ref(stack, f"service-secrets/{suffix}", "secret_id"),
                    "version": "latest",
                }
            },
        }
        for name, suffix in (("ADMIN_TOKEN", "admin-token"), ("ROUTING_SECRET", "routing-key"))
    ]
    assert sidecar == {
        "name": "collector",
        "image": "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0",
        "depends_on": ["service"],
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
        "volume_mounts": [{"name": "rungmp-config", "mount_path": "/etc/rungmp"}],
    }
    assert run["template"]["volumes"] == [
        {
            "name": "rungmp-config",
            "secret": {
                "secret": synth.ref(stack, "metrics-export/runmonitoring", "secret_id"),
                "items": [
                    {
                        "path": "config.yaml",
                        "version": synth.ref(stack, "metrics-export/runmonitoring-version", "version"),
                    }
                ],
            },
        }
    ]
    # the service starts only once every secret has its value and its accessor grant
    paths = {address: path for path, (_, address, _) in synth.by_path(stack).items()}
    assert [paths[address] for address in run["depends_on"]] == [
        "apis/run",
        "service-secrets/admin-token-version",
        "service-secrets/routing-key-version",
        "service-secrets/admin-token-accessor",
        "service-secrets/routing-key-accessor",
        "metrics-export/runmonitoring-version",
        "metrics-export/runmonitoring-accessor",
    ]
