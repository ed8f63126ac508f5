"""The lazy provider loader keeps the provider package's ~1,470 submodules unloaded."""

from __future__ import annotations

import sys

import pytest

from infra import provider_loader


def test_only_the_used_submodules_are_loaded(synth):
    module = sys.modules["cdktf_cdktf_provider_google"]
    assert "lazy stub" in (module.__doc__ or "")
    loaded = provider_loader.loaded_submodules()
    assert "storage_bucket" in loaded and "_jsii" in loaded
    assert len(loaded) < 60, loaded  # of ~1,470 (the stacks use about 50 resource types)
    assert "compute_instance" not in loaded


def test_unused_submodule_still_imports_on_demand():
    import importlib

    module = importlib.import_module("cdktf_cdktf_provider_google.pubsub_subscription")
    assert hasattr(module, "PubsubSubscription")


def test_missing_package_says_how_to_install():
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '.\[infra\]'"):
        provider_loader.install(("cdktf_cdktf_provider_does_not_exist",))
    assert "cdktf_cdktf_provider_does_not_exist" not in sys.modules
