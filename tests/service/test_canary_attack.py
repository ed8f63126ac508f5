"""The canary attack of issue 24, replayed on a real two-worker gunicorn server: it no longer moves the verdict.

The attack (reproduced on the old code): pick X-Client-Id values that hash to the challenger or the champion (the
salt was the challenger's version, which every reply names), send 200 requests as one id to reach `promote`, then
20 requests of 256 images to the challenger to flip it to `rollback` on p99 latency. Now the route is a keyed hash
of the caller the proxy saw (the test plays Cloud Run's front end by writing the trusted X-Forwarded-For hop), one
client's weight is capped, a verdict needs distinct clients, and latency is compared on the same images.
The challenger is the champion's own model under another version: the only right verdict is promote."""

from __future__ import annotations

import numpy as np
import pytest

from service.rollout import route
from tests.service.conftest import ADMIN, ADMIN_ENV, start_service, stop_service
from tests.service.model_factory import build_registry, generated_images, make_version
from tests.service.test_rollout_server import _with_candidate

SECRET = "test-routing-secret-0123456789abcdef"
OCTET = {"Content-Type": "application/octet-stream"}
CAP, MIN_CLIENTS, MIN_REQUESTS = 50, 10, 200


@pytest.fixture(scope="module")
def canary_server(tmp_path_factory, model_dir):
    twin, _ = make_version(model_dir, tmp_path_factory.mktemp("twin") / "test-v2", "test-v2", digests=False)
    root = _with_candidate(build_registry(tmp_path_factory.mktemp("attack") / "models", model_dir), twin)
    server = start_service(
        tmp_path_factory.mktemp("attack-live"),
        MODEL_URI=f"{root}@champion",
        CHALLENGER="candidate",
        ROLLOUT_MODE="canary",
        CANARY_PERCENT="50",
        SHADOW_SAMPLE_EVERY="1",
        ROLLOUT_MIN_REQUESTS=str(MIN_REQUESTS),
        ROLLOUT_MIN_CLIENTS=str(MIN_CLIENTS),
        ROLLOUT_MAX_CLIENT_REQUESTS=str(CAP),
        ROUTING_SECRET=SECRET,
        TRUSTED_PROXY_HOPS="1",
        WORKERS="2",
        **ADMIN_ENV,
    )
    yield server
    stop_service(server)


def _side(address: str) -> bool:
    return route(SECRET.encode(), "test-v2", f"ip:{address}").in_canary(50)


def _bucket(address: str) -> str:
    return route(SECRET.encode(), "test-v2", f"ip:{address}").bucket


@pytest.mark.slow
def test_the_attack_no_longer_moves_the_verdict(canary_server):
    addresses = [f"203.0.113.{i}" for i in range(1, 60)]
    on_challenger = next(a for a in addresses if _side(a))  # the attacker's luck: its address drew the challenger
    on_champion = next(a for a in addresses if not _side(a))
    one = generated_images(1, 1)[0].tobytes()

    def send(address, body, **headers):
        status, _, reply = canary_server.request(
            "POST", "/predict", body, {**OCTET, "X-Forwarded-For": f"10.9.9.9, {address}", **headers}
        )
        assert status == 200, reply
        return reply

    def report():
        status, document = canary_server.json("GET", "/monitoring/rollout", headers=ADMIN)
        assert status == 200
        return document

    # 1. ids chosen by the client: every one lands where the address lands, on either side
    for address, version in ((on_challenger, b"test-v2"), (on_champion, b"test-v1")):
        for i in range(50):
            assert b'"model_version":"' + version + b'"' in send(address, one, **{"X-Client-Id": f"pick-{i}"})
    # 2. 200 requests as one id from one client: capped, one client, no verdict
    for _ in range(200):
        send(on_challenger, one, **{"X-Client-Id": "always-the-challenger"})
    alone = report()
    assert alone["challenger"]["requests"] == 250 and alone["challenger"]["clients"] == 1
    assert alone["evidence"]["clients"] == 1 and alone["evidence"]["requests_credited"] == CAP
    assert alone["verdict"]["decision"] == "wait", alone["verdict"]
    assert f"1 of the {MIN_CLIENTS} distinct clients" in " ".join(alone["verdict"]["reasons"])
    # 3. honest clients, 12 requests of 4 images each: the twin challenger is promoted
    honest = [f"198.51.100.{i}" for i in range(1, 41)]
    for index, address in enumerate(honest):
        for j in range(12):
            send(address, generated_images(4, 1000 + 12 * index + j)[0].tobytes())
    counted: dict[str, int] = {_bucket(on_challenger): 250}
    for address in (a for a in honest if _side(a)):
        counted[_bucket(address)] = counted.get(_bucket(address), 0) + 12
    assert len(counted) >= MIN_CLIENTS, "the test needs enough distinct challenger clients"
    fair = report()
    assert fair["verdict"]["decision"] == "promote", fair["verdict"]
    assert fair["evidence"]["clients"] == len(counted)
    assert fair["evidence"]["requests_credited"] == sum(min(CAP, n) for n in counted.values())
    # 4. 20 requests of 256 images to each side: latency is compared on the same images, the verdict stands
    big = generated_images(256, 7)[0].tobytes()
    for address in (on_challenger, on_champion):
        for _ in range(20):
            send(address, big)
    after = report()
    assert after["verdict"]["decision"] == "promote", after["verdict"]
    assert after["evidence"]["latency_ratio"] < 1.5
    print(
        f"\nattack replay: alone {alone['verdict']}, evidence {alone['evidence']}\n"
        f"fair {fair['verdict']}, evidence {fair['evidence']}\nafter big requests {after['verdict']}, "
        f"evidence {after['evidence']}, p99 per image ms champion {after['champion']['inference_p99_ms']} "
        f"challenger {after['challenger']['inference_p99_ms']}"
    )
    assert np.isfinite(after["agreement"]["rate"]) and after["agreement"]["rate"] == 1.0
