"""The starter's configuration: the variables contracts.starter names, set by infra/components/pipelines.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.starter import REQUIRED, StarterEnv
from starter.events import Sources


class ConfigError(ValueError):
    """A variable is missing; the message names each one and where they come from."""


@dataclass(frozen=True)
class Config:
    environ: Mapping[str, str]

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Config:
        missing = [name for name in REQUIRED if not environ.get(name)]
        if missing:
            raise ConfigError(
                f"missing {', '.join(missing)}: the stack sets them (contracts.starter.starter_environment); "
                "set them by hand only to run the starter outside Google Cloud"
            )
        return cls(dict(environ))

    def __getitem__(self, name: str) -> str:
        return self.environ[name]

    @property
    def parent(self) -> str:
        return f"projects/{self[StarterEnv.PROJECT]}/locations/{self[StarterEnv.REGION]}"

    @property
    def aiplatform_endpoint(self) -> str:
        local = self.environ.get(StarterEnv.AIPLATFORM_ENDPOINT, "")
        return local.rstrip("/") or f"https://{self[StarterEnv.REGION]}-aiplatform.googleapis.com"

    @property
    def local(self) -> bool:
        """Talking to local stand-ins (tests): no Google credentials are looked for."""
        return bool(self.environ.get(StarterEnv.AIPLATFORM_ENDPOINT))

    @property
    def labels(self) -> dict[str, str]:
        return dict(json.loads(self[StarterEnv.LABELS]))

    @property
    def sources(self) -> Sources:
        return Sources(
            datasets_bucket=self[StarterEnv.DATASETS_BUCKET],
            commit_object=self[StarterEnv.COMMIT_OBJECT],
            new_data_topic=self[StarterEnv.NEW_DATA_TOPIC],
            drift_topic=self[StarterEnv.DRIFT_TOPIC],
        )
