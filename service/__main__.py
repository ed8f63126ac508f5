"""`python -m service`: read the model, then run gunicorn with service/gunicorn_conf.py.

Settings come from environment variables (see service/config.py and `python -m service --help`). The model is
read before gunicorn starts, so a missing model ends with one clear message and exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CONF_PATH = Path(__file__).with_name("gunicorn_conf.py")

HELP = """usage: python -m service

Serve the Fashion-MNIST model under gunicorn. Settings are environment variables:
  AIP_STORAGE_URI / MODEL_URI  model directory (local or gs://) or registry reference <models-root>@<alias>;
                               default: the local registry's champion (<FMNIST_STORAGE_ROOT or .mlops>/models@champion)
  AIP_HTTP_PORT / PORT         port (default 8080); SERVICE_HOST bind address (default 0.0.0.0)
  AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE   routes (default /health and /predict)
  WORKERS (2)  MAX_INSTANCES (256)  MAX_BODY_BYTES (1500000)  PAGE_ENABLED (true locally, false on Cloud Run/Vertex)
  DRIFT_PSI_THRESHOLD (0.2)  DRIFT_MIN_IMAGES (200)  DRIFT_SAMPLE_EVERY (8)  LOG_LEVEL (INFO)
  MODEL_POLL_S (30)            with a registry reference, each worker re-reads the registry this often and
                               serves what the alias names (verified, warmed up, swapped without a restart);
                               an alias not set yet: start anyway and serve once a model is promoted
                               (MODEL_RECHECK_S: its old name, still read)
  MODEL_ARTIFACT (float)       int8: serve the export's int8 artifact where it passed its gate
  REQUIRE_DIGESTS              refuse versions without recorded SHA-256 digests (true on Cloud Run/Vertex, else false)
  INDEX_PUBLIC_KEY / _FILE     the promoter's public key (PEM): a registry index not signed with it is refused;
                               REQUIRE_SIGNED_INDEX (true on Cloud Run/Vertex) makes the key mandatory
  ADMIN_ENABLED (false) + ADMIN_TOKEN   enable POST /monitoring/drift/reset and the full GET /v1/model for
                               callers sending 'Authorization: Bearer <ADMIN_TOKEN>' (from a secret, never the image)
  CHALLENGER (none)            a second model beside the champion (alias such as candidate, version id, reference);
                               ROLLOUT_MODE (shadow|canary), CANARY_PERCENT (10), SHADOW_SAMPLE_EVERY (1),
                               ROLLOUT_MIN_REQUESTS/_MIN_AGREEMENT/_MAX_LATENCY_RATIO/_MAX_ERROR_RATE;
                               see GET /monitoring/rollout
  TRUSTED_PROXY_HOPS           X-Forwarded-For entries appended by trusted proxies (1 on Cloud Run/Vertex, else 0)
  STORAGE_EMULATOR_HOST        read gs:// from a GCS emulator without credentials
Per-request bounds: see SECURITY.md and /openapi.json.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(HELP, file=sys.stdout if argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one thread per worker, no idle BLAS pool
    from service.config import ConfigError, ServiceConfig
    from service.state_dir import prepare_state_dir

    try:
        ServiceConfig.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prepare_state_dir()  # before anything imports prometheus_client

    from service.model_errors import ModelLoadError

    try:
        import service.wsgi  # noqa: F401 - reads the model now; gunicorn's preload then finds it imported
    except ModelLoadError as exc:
        from service.state_dir import remove_state_dir

        remove_state_dir()
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = ["python -m service", "--config", str(CONF_PATH)]
    WSGIApplication("%(prog)s").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
