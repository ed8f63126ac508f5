"""The container tests' image check, for the twin's tests whose custom jobs run the trainer image."""

import pytest

from tests.containers.conftest import image_reference


@pytest.fixture(scope="session")
def trainer_image() -> str:
    """This checkout's trainer image (`make images`): skipped without it, failed with FMNIST_REQUIRE_IMAGES=1."""
    return image_reference("trainer")
