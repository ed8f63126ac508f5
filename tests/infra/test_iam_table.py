"""The IAM table in SECURITY.md is what the synthesized dev stacks grant (python -m infra.iam_table --write), and it
shows the issue-25 facts a reviewer looks for: one signer of the registry index, and every writer of the models
bucket."""

from __future__ import annotations

import json

from infra.iam_table import BEGIN, END, SECURITY, rows, table
from tests.infra.conftest import BOOTSTRAP


def dev_stacks(synth) -> dict[str, dict]:
    """Every stack of dev (bootstrap, dev, images-dev, serving-dev), as `python -m infra.iam_table` reads them."""
    return {name: json.loads(synth.texts[name]) for name in ("dev", "images-dev", "serving-dev", BOOTSTRAP["dev"])}


def test_the_security_page_table_is_the_generated_one(synth):
    text = SECURITY.read_text()
    written = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert written.strip() == table(dev_stacks(synth)).strip(), (
        "SECURITY.md's IAM table is stale: run `python -m infra.iam_table --write`"
    )


def test_only_the_promoter_may_sign_the_index_and_the_writers_of_models_are_listed(synth):
    grants = [r for name, stack in dev_stacks(synth).items() for r in rows(stack, name)]
    on_key = {(principal, role) for principal, role, target, *_ in grants if "index_signing" in target}
    # the promoter signs; the deployer reads the public key (serving-<env> plans with it, restore checks with it)
    assert on_key == {("promoter", "roles/cloudkms.signerVerifier"), ("deployer", "roles/cloudkms.publicKeyViewer")}
    models_writers = {
        principal for principal, role, target, *_ in grants if target.endswith("storage_models") and "Admin" in role
    }
    # trainer and pipelines under the "job outputs only" condition (tests/infra/test_index_writers.py)
    assert models_writers == {"fmnist-mlops-dev-trainer", "fmnist-mlops-dev-pipelines", "fmnist-mlops-dev-promoter"}
