"""What every Vertex AI adapter shares: the check that a command that sends requests runs on the gcp target."""

from __future__ import annotations

from trainer.errors import CommandError


def require_gcp(settings, command: str) -> None:
    if settings.target != "gcp":
        raise CommandError(
            f"`{command}` talks to Vertex AI: use a gcp environment (--env dev) with credentials "
            f"(`gcloud auth application-default login`); add --dry-run to see the requests only"
        )
