"""Only the promoter can write the registry index: the synthesized stacks pass, and a stack that lets another
principal write the models bucket (unconditioned, conditioned on registry/, or at project level) fails."""

from __future__ import annotations

import json

import pytest

from infra.index_writers import problems
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS

MODELS = "fmnist-mlops-dev-models"
TRAINER = "serviceAccount:fmnist-mlops-dev-trainer@fmnist-mlops-dev.iam.gserviceaccount.com"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_stacks_let_only_the_promoter_write_the_index(synth, env, settings_by_env):
    stacks = {name: json.loads(synth.texts[name]) for name in (env, BOOTSTRAP[env])}
    assert list(problems(stacks, settings_by_env[env].names.bucket("models"))) == []
    trainer = [
        g
        for g in synth.resources(env, "google_storage_bucket_iam_member").values()
        if "storage_models" in g["bucket"] and "trainer" in g["member"]
    ]
    assert sorted((g["role"], (g.get("condition") or {}).get("title")) for g in trainer) == [
        ("roles/storage.objectAdmin", "job outputs only"),
        ("roles/storage.objectViewer", None),
    ]


def grant(role: str, condition: dict | None = None, kind: str = "google_storage_bucket_iam_member") -> dict:
    body = {"role": role, "member": TRAINER}
    if kind != "google_project_iam_member":
        body["bucket"] = "${google_storage_bucket.storage_models_0A1B2C3D.name}"
    if condition:
        body["condition"] = condition
    return {"dev": {"resource": {kind: {"bad": body}}}}


def prefix(name: str) -> dict:
    return {"title": "t", "expression": f'resource.name.startsWith("projects/_/buckets/{MODELS}/objects/{name}")'}


@pytest.mark.parametrize(
    "stacks",
    [
        grant("roles/storage.objectAdmin"),
        grant("roles/storage.objectCreator", prefix("registry/")),
        grant("roles/storage.objectAdmin", prefix("")),
        grant("roles/storage.objectAdmin", {"title": "t", "expression": "request.time < timestamp('2100-01-01')"}),
        grant("roles/storage.objectAdmin", kind="google_project_iam_member"),
    ],
    ids=["unconditioned", "registry-prefix", "empty-prefix", "not-a-name-condition", "project-level"],
)
def test_another_writer_of_the_index_fails_the_policy(stacks):
    (problem,) = problems(stacks, MODELS)
    assert "lets trainer write fmnist-mlops-dev-models/registry/index.json" in problem


def test_a_writer_limited_to_job_outputs_passes():
    assert list(problems(grant("roles/storage.objectAdmin", prefix("jobs/")), MODELS)) == []
