"""The propagation waits (infra/components/waits.py) on the synthesized environment stacks: each `time_sleep`'s
Terraform address, its duration, what it waits for, and the `hashicorp/time` provider it runs on, declared once per
stack at the pinned version. A wait of "6s" or one that waits for nothing passes every plan and fails the first
deploy on a new project ("permission denied" on a key grant that has not propagated yet)."""

from __future__ import annotations

import pytest

from tests.infra.conftest import ENVIRONMENTS

WAITS = {  # construct path -> its duration
    "kms/grants-propagated": "60s",  # every CMEK agent's key grant
    "budget/quota-api-propagated": "60s",  # the budget's quota project's Billing Budget API
    "pipelines/eventarc-grants-propagated": "60s",  # the triggers' grants and Eventarc's agent
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_wait_sleeps_sixty_seconds_on_the_time_provider_after_what_it_guards(synth, env):
    found = {p: body for p, (kind, _, body) in synth.by_path(env).items() if kind == "time_sleep"}
    assert {p: body["create_duration"] for p, body in found.items()} == WAITS
    assert {p: body["provider"] for p, body in found.items()} == dict.fromkeys(WAITS, "time")
    assert {p: sorted(set(body) - {"//"}) for p, body in found.items()} == dict.fromkeys(
        WAITS, ["create_duration", "depends_on", "provider"]
    )
    assert {path: synth.waits(env, path)[path] for path in WAITS} == {
        "kms/grants-propagated": [
            f"kms/{agent}_agent_encrypter"
            for agent in ("artifactregistry", "pubsub", "aiplatform", "cloudfunctions", "run", "storage", "bigquery")
        ],
        "budget/quota-api-propagated": ["apis/billingbudgets"],
        "pipelines/eventarc-grants-propagated": [
            "pipelines/eventarc-agent",
            "pipelines/storage_agent_pubsub_publisher",
            "identity/starter_eventarc_eventReceiver",
            "pipelines/starter/invoker",
        ],
    }
    stack = synth.stack(env)
    assert stack["provider"]["time"] == [{}]
    assert stack["terraform"]["required_providers"]["time"] == {"source": "hashicorp/time", "version": "0.13.1"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_bootstrap_stack_declares_no_time_provider_it_does_not_use(synth, env):
    bootstrap = synth.stack(f"bootstrap-{env}")
    assert "time_sleep" not in bootstrap.get("resource", {})
    assert "time" not in bootstrap.get("provider", {})
