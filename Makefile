# Two commands do all set-up on a fresh Debian/Ubuntu machine:
#   make demo   the whole local lifecycle on the real Fashion-MNIST
#   make test   the test suite
# Both (re)create .venv when pyproject.toml changes and install what they need.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
KFP_VENV := .venv-kfp
KFP_VERSION := 2.17.3
# Every venv is filled by uv (the dev group pins the same version): from a fresh clone it set up the project's venv
# and checkov's together in 189 s (empty cache) and 254 s (warm) where pip took 545 and 675 s (runs at load 4-14),
# and in 52 s on a quiet machine with an empty cache; the same 225 + 96 packages at the same versions (issue 26). uv compiles bytecode only when told, and the google provider imports 3x slower
# without .pyc files: never drop --compile-bytecode. --system-certs: the host's trust store, as pip uses it (uv's own
# roots fail behind a TLS-intercepting proxy whose CA only the host trusts, unless SSL_CERT_FILE names it).
UV_VERSION := 0.13.8
UV := $(VENV)/bin/uv
UV_INSTALL := $(UV) pip install -q --compile-bytecode --system-certs
export TF_CPP_MIN_LOG_LEVEL ?= 3
export CHECKPOINT_DISABLE := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# Write .pyc files (and pytest's rewritten test modules) even where the environment says not to (container images
# often set PYTHONDONTWRITEBYTECODE=1; this machine's does): otherwise every process compiles the project again and
# every pytest worker rewrites every test module again (collection 33-35 s instead of 21 s, measured beside a
# training run, issue 26). Empty = write.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup system-deps lint demo test test-fleet images test-images twin-gcp mutate serve venv-serve scan synth bench bench-train bootstrap deploy destroy clean notebooks
ENV ?= dev

setup: system-deps $(VENV)/.installed $(CHECKOV_VENV)/.installed $(KFP_VENV)/.installed node_modules/.installed

# Debian packages: the data set, venv support, Chromium for the browser tests, Node.js for the cdktf CLI, podman.
system-deps:
	@bash scripts/system_deps.sh

# uv itself, the one thing pip installs: the project's venv holds it, the other venvs are filled from there.
$(UV):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV_INSTALL) --python $(PY) -e '.[infra,trainer,service,dev]'
	@touch $@

# checkov conflicts with google-cloud-aiplatform's pins: it gets its own venv.
$(CHECKOV_VENV)/.installed: | $(UV)
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(UV_INSTALL) --python $(CHECKOV_VENV)/bin/python checkov==$(CHECKOV_VERSION)
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The demo needs the project's venv and checkov's (the policy scan), not kfp's venv or the cdktf CLI (setup's other
# two parts: kfp's venv 12 s and npm ci 13 s of a fresh clone's set-up, each timed alone on 2 quiet cores).
demo: system-deps $(VENV)/.installed $(CHECKOV_VENV)/.installed
	$(PY) -m lifecycle $(DEMO_ARGS)

# ruff (lint + format), mypy (strict on contracts/ and service/), import-linter: what .ci/run checks first.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The container tests (tests/containers) are not part of it: `make test-images` runs them against `make images`.
# Two pytest-xdist workers: in one process the suite kept one core of two busy (485 s wall quiet; about 450 s of
# user+sys in one process, 470 s on two workers). Whole modules per worker, slow ones first, the --shuffle seed
# shared (tests/xdist_modules.py, tests/shuffle.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -m "not container and not fleet" -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The fleet: several service instances, a real Prometheus and Alertmanager (Debian packages), the PromQL verdicts,
# the drift alert's chain and the ramp over them; minutes of real traffic, so a stage of their own in CI (.ci/run).
test-fleet: setup
	$(PY) -m pytest -m fleet tests/service $(PYTEST_ARGS)

# Both images with podman, tagged localhost/fmnist-<image>:<content tag> (scripts/build_images.sh); Debian
# stand-in bases where the public ones cannot be pulled. Needs root (podman's settings for these machines).
images: system-deps
	@bash scripts/build_images.sh

# The container contract tests against the images of this checkout: they fail (not skip) when those are missing.
test-images: setup
	FMNIST_REQUIRE_IMAGES=1 $(PY) -m pytest -m container tests/containers $(PYTEST_ARGS)

# The whole gcp lifecycle (python -m lifecycle --target gcp) offline, on smoke data: fake-gcs-server and the twin's
# Vertex AI, BigQuery, Cloud Monitoring and metadata server (twin/), reached by the real client libraries; the custom
# job trains in the trainer image with podman. Needs `make images` and root, like test-images. TWIN_ARGS="--help".
twin-gcp: setup
	$(PY) -m twin $(TWIN_ARGS)

# Mutation testing (mutmut) of storage, the registry and gate, IDX + ingest, request parsing and the Google Cloud
# adapters, each group with its own tests in a scratch copy: killed/survived per module and every survivor.
# Slow (see README "Testing"), so not part of .ci/run; MUTATE_GROUPS="storage registry" runs some groups.
# No .pyc files written here only: elsewhere every process of a fresh clone would compile the project's modules again,
# and pytest would rewrite every test module and plugin again (3 s of CPU per test session measured in issue 26).
mutate: export PYTHONDONTWRITEBYTECODE = 1
mutate: setup
	$(PY) -m tests.mutate $(MUTATE_GROUPS)

# JupyterLab on the project, opened at notebooks/ (after `make demo`, which leaves data and a champion to explore).
# Jupyter refuses to run as root unless told: containers and CI machines often are root.
notebooks: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

# Serve the local registry's champion on :8080 (after `make demo`).
serve: setup
	$(PY) -m service

# A venv with only the serving dependencies: what the service image holds.
venv-serve:
	@test -x .venv-serve/bin/python || $(PYTHON) -m venv .venv-serve
	.venv-serve/bin/pip install -q '.[service]' && du -sh .venv-serve

synth: setup
	$(PY) -m infra.scan --synth-only

scan: setup
	$(PY) -m infra.scan

# Google Cloud (needs credentials; infra/README.md, "Deploy and destroy"). Each path starts with the placeholder
# preflight. `bootstrap` runs once per environment, by a person. `deploy` runs <env>, images-<env> (the only stack
# that needs a Docker daemon) and serving-<env> in that order; `destroy` undeploys the SDK's models first, refuses
# while any remain on the endpoint, then takes down serving-<env> and <env> in reverse, without a daemon (images-<env>
# keeps nothing outside the repository that <env> deletes; the next deploy finds its pushes gone and pushes again).
bootstrap: setup
	$(PY) -m infra.preflight bootstrap-$(ENV)
	npx cdktf deploy bootstrap-$(ENV)

deploy: setup
	. scripts/secret_seeds.sh && export DOCKER_REGISTRY_PASS="$$(gcloud auth print-access-token)" && $(PY) -m infra.preflight --deploy $(ENV) && npx cdktf deploy $(ENV) images-$(ENV) serving-$(ENV)

destroy: setup
	$(PY) -m infra.preflight $(ENV)
	$(PY) -m trainer --env $(ENV) undeploy-all --yes
	$(PY) -m infra.endpoint_guard $(ENV)
	. scripts/secret_seeds.sh && npx cdktf destroy serving-$(ENV)
	. scripts/secret_seeds.sh && npx cdktf destroy $(ENV) --ignore-missing-stack-dependencies

bench: setup
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# Both CPU presets on the real data (about 10 minutes on 2 cores); `make bench` runs the demo preset only.
bench-train: setup
	$(PY) bench/bench_train.py --preset demo && $(PY) bench/bench_train.py --preset full

clean:
	rm -rf cdktf.out .pytest_cache

# kfp pins protobuf < 7 and requests == 2.33.0, older than the trainer's: it gets its own venv (lifecycle/orchestration/compile.py).
$(KFP_VENV)/.installed: | $(UV)
	@test -x $(KFP_VENV)/bin/python || $(PYTHON) -m venv $(KFP_VENV)
	$(UV_INSTALL) --python $(KFP_VENV)/bin/python kfp==$(KFP_VERSION) 'pydantic>=2.6,<3' 'pyyaml>=6.0' 'numpy>=1.26,<3'
	@touch $@

.PHONY: pipeline-venv pipeline pipeline-local pipeline-graph
pipeline-venv: $(KFP_VENV)/.installed

# The lifecycle and the prediction pipeline (KFP v2 YAML) for ENV (default dev), into build/.
pipeline: pipeline-venv
	$(KFP_VENV)/bin/python -m lifecycle compile --env $(ENV)
	$(KFP_VENV)/bin/python -m lifecycle compile --env $(ENV) --pipeline prediction --output build/fmnist-batch-prediction.yaml

# The local environment's compiled pipeline, executed task by task on this machine (lifecycle/orchestration/run_compiled.py).
pipeline-local: setup pipeline-venv
	$(KFP_VENV)/bin/python -m lifecycle compile --env local --output build/fmnist-lifecycle-local.yaml $(PIPELINE_ARGS)
	$(PY) -m lifecycle run-compiled build/fmnist-lifecycle-local.yaml

# The README's picture of the dev pipeline, drawn from the compiled spec.
pipeline-graph: pipeline
	$(PY) -m lifecycle graph build/fmnist-lifecycle.yaml --output docs/lifecycle-pipeline.png
