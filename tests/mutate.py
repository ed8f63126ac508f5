"""`make mutate`: mutation testing (mutmut) of the modules where a silent bug costs most, each group with only
its own tests, in a scratch copy of the tree; prints killed/survived per module and every survivor's diff.

Why mutmut: it forks a worker per mutant from a process that has already imported the code and collected the
tests, and runs only the tests that reach the mutated function, so a group of a few hundred mutants takes
minutes on two cores; cosmic-ray starts the whole test command afresh for every mutant (TensorFlow and the
Google Cloud SDK import in 10-25 s here). Why a scratch copy: mutmut writes `mutants/` beside the code.

    python -m tests.mutate                    every group
    python -m tests.mutate storage registry   some groups (names below)
    MUTATE_KEEP=1 ...                         keep the scratch copies (to `mutmut show` a survivor there)
    MUTATE_ONLY="lifecycle.orchestration.run_compiled.*" ...
                                              only the mutants these names or globs match (space-separated),
                                              e.g. one module of a group, or the survivors of an earlier run
    MUTATE_ISOLATION=fork ...                 fork mutants from the test process (faster; only for groups
                                              whose tests start no threads: idx, see README "Testing")
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_EXPORT = ["-k", "not export"]  # the export test trains a TensorFlow model: slow, and not safe after fork
# tests that compile with kfp's interpreter: the mutated lifecycle package it would import needs mutmut, which
# kfp's venv lacks; the rest of the file (step list, harness, wrapper) runs in-process
FIRST_WAVE_CLOUD = ("vertex", "automl", "submit", "tuning", "experiments", "undeploy_all")  # the others: own groups
NO_KFP_LIFECYCLE = ["-k", "not (compiled or gpus or graph_is_drawn or gate_is_a or every_read or prediction_pipeline)"]

# the notebook tests over the session's explored world: a smoke training and a served champion, once per mutant
NO_WORLD = ["-k", "not (measured_here or feature_table_has or local_service or connect_outlives or gclouds_identity)"]
# group -> (files to mutate, the tests that own them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "storage": (
        ["storage/__init__.py"],
        [
            "tests/storage/test_storage.py",
            "tests/storage/test_storage_edges.py",
            "tests/storage/test_torn_downloads.py",
            "tests/trainer/test_crash_consistency.py",
            *NO_EXPORT,
        ],
    ),
    "registry": (
        ["trainer/models/registry.py"],
        [
            "tests/trainer/test_registry.py",
            "tests/trainer/test_registry_races.py",
            "tests/trainer/test_registry_index.py",
            "tests/trainer/test_registry_signed.py",
            "tests/trainer/test_registry_signed_exact.py",
            "tests/trainer/test_crash_consistency.py",
            *NO_EXPORT,
        ],
    ),
    "idx": (["trainer/data/idx.py"], ["tests/trainer/test_idx.py", "tests/trainer/test_idx_messages.py"]),
    # the pipeline starter: filter, decision, deferrals object and Vertex AI client, with their in-process tests
    # (the last two over HTTP against fake-gcs-server and the Vertex AI fake). Not tests/starter/test_function.py:
    # it runs the function from its archive in a process of its own, with the environment Cloud Run would give it,
    # where mutmut cannot say which mutant is under test
    "starter": (
        ["starter/events.py", "starter/logic.py", "starter/deferrals.py", "starter/vertex.py"],
        [
            "tests/starter/test_events.py",
            "tests/starter/test_logic.py",
            "tests/starter/test_deferrals.py",
            "tests/starter/test_vertex.py",
        ],
    ),
    "ingest": (
        ["trainer/data/ingest.py"],
        [
            "tests/trainer/test_ingest.py",
            "tests/trainer/test_ingest_manifest.py",
            "tests/trainer/test_ingest_sources.py",
            "tests/trainer/test_crash_consistency.py",
            *NO_EXPORT,
        ],
    ),
    "request-parsing": (
        ["service/request_parsing.py"],
        ["tests/service/test_request_parsing.py", "tests/service/test_request_parsing_exact.py"],
    ),
    "cloud": (
        [f"trainer/cloud/{name}.py" for name in FIRST_WAVE_CLOUD],
        [
            "tests/trainer/test_vertex.py",
            "tests/trainer/test_automl.py",
            "tests/trainer/test_sdk_contracts.py",
            "tests/trainer/test_cloud_requests.py",
            "tests/trainer/test_tune_exact.py",  # tuning.send waits for the job's creation (seventh session)
        ],
    ),
    # ---- the second wave: rollout, model versions, the lifecycle pipeline and its cloud steps -------------------
    "versions": (
        ["service/versions.py"],
        [
            "tests/service/test_versions.py",
            "tests/service/test_versions_retry.py",
            "tests/service/test_versions_events.py",
            "tests/service/test_versions_boot.py",
            "tests/service/test_versions_exact.py",
        ],
    ),
    "model-source": (  # the model's loading, split into reader, reference and verified bundle (issue 21)
        ["service/model_reader.py", "service/model_reference.py", "service/model_bundle.py"],
        [
            "tests/service/test_model_source.py",
            "tests/service/test_model_source_exact.py",
            "tests/service/test_versions.py",
        ],
    ),
    "service-rollout": (
        ["service/rollout.py"],
        [
            "tests/service/test_rollout.py",
            "tests/service/test_rollout_evidence.py",
            "tests/service/test_rollout_report.py",
            "tests/service/test_rollout_tallies_exact.py",
            "tests/service/test_rollout_predict_exact.py",
        ],
    ),
    # the predict route's plain WSGI handler (issue 26's hot path) with the in-process tests that post to it: the
    # app's contract and errors, the metrics' exact deltas, drift, feedback, the canary's report; not the tests
    # that start gunicorn (two_workers, real_service): the route runs there in another process
    "predict-route": (
        ["service/predict_route.py"],
        [
            "tests/service/test_predict_route_exact.py",
            "tests/service/test_app.py",
            "tests/service/test_metrics_deltas.py",
            "tests/service/test_drift.py",
            "tests/service/test_feedback.py",
            "tests/service/test_rollout_report.py",
            *["-k", "not (two_workers or real_service)"],
        ],
    ),
    "contracts-rollout": (
        ["contracts/rollout.py"],
        # its own tests and the canary's (fast); the service's rollout tests train a model per run (service-rollout)
        ["tests/contracts/test_rollout.py", "tests/trainer/test_rollout.py", "tests/service/test_config.py"],
    ),
    "lifecycle": (
        ["lifecycle/orchestration/plan.py", "lifecycle/orchestration/run_compiled.py"],
        [
            "tests/lifecycle/test_pipeline.py",
            "tests/lifecycle/test_plan_exact.py",
            "tests/lifecycle/test_harness.py",  # run_compiled's harness on a committed kfp-compiled fixture
            "tests/trainer/test_pipeline_step.py",
            *NO_KFP_LIFECYCLE,
        ],
    ),
    "pipeline-step": (
        ["trainer/cloud/pipeline_step.py"],
        ["tests/trainer/test_pipeline_step.py", "tests/lifecycle/test_pipeline.py", *NO_KFP_LIFECYCLE],
    ),
    "trainer-rollout": (
        ["trainer/cloud/rollout.py"],
        [
            "tests/trainer/test_rollout.py",
            "tests/trainer/test_rollout_edges.py",
            "tests/trainer/test_rollout_output.py",
        ],
    ),
    "deploy-model": (
        ["trainer/cloud/deploy_model.py"],
        [
            "tests/trainer/test_vertex.py",
            "tests/trainer/test_cloud_requests.py",
            "tests/trainer/test_sdk_contracts.py",
            "tests/trainer/test_deploy_model_cli.py",
        ],
    ),
    "feature-store": (  # the command over the wire to the twin's BigQuery and Vertex AI, in-process (~1 s a test)
        ["trainer/cloud/feed_feature_store.py"],
        ["tests/trainer/test_feature_store.py", "tests/trainer/test_feature_store_cli.py"],
    ),
    "batch-prediction": (
        ["trainer/cloud/batch_prediction.py"],
        [
            "tests/trainer/test_batch_prediction_job.py",
            "tests/trainer/test_batch_prediction_wire.py",
            "tests/lifecycle/test_batch_predict.py",
            # not the four batch scorer tests that train a model (the rest, the wire tests too, train none)
            *["-k", "not (png_directory or batch_scorer or read_like_a_directory or bad_sources)"],
        ],
    ),
    "import-evaluation": (
        ["trainer/cloud/import_evaluation.py"],
        ["tests/trainer/test_import_evaluation.py", "tests/trainer/test_import_evaluation_exact.py"],
    ),
    "quantize": (
        ["trainer/models/quantize.py"],
        [
            "tests/trainer/test_quantize.py",
            "tests/trainer/test_quantize_exact.py",
            # not the two that train the session's smoke model (once per mutant here): what they check (an int8
            # classifier, both artifacts timed) is pinned on the exact tests' hand-built ONNX classifier
            *["-k", "not (still_a_classifier or really_timed)"],
        ],
    ),
    # the policies on fixture documents; the test over the synthesized stacks costs a synth per mutant
    "graph-policies": (
        ["infra/graph_policies.py"],
        [
            "tests/infra/test_graph_policies.py",
            "tests/infra/test_graph_policies_edges.py",
            "tests/infra/test_graph_policies_exact.py",
            *["-k", "not synthesized"],
        ],
    ),
    # constructs: each mutant's run synthesizes the stacks once (the `synth` fixture is per test only while mutmut
    # maps tests to functions, tests/infra/conftest.py); the tests pin the synthesized values
    "infra-pipelines": (
        ["infra/components/pipelines.py"],
        ["tests/infra/test_pipelines.py", "tests/infra/test_pipelines_exact.py"],
    ),
    "promoter-infra": (
        ["infra/components/promoter.py", "infra/components/ramp.py", "infra/components/starter_function.py"],
        [
            "tests/infra/test_promoter.py",
            "tests/infra/test_promoter_exact.py",
            "tests/infra/test_starter_function_exact.py",
            "tests/infra/test_ramp_infra.py",
            "tests/infra/test_index_writers.py",
            "tests/infra/test_pipelines.py",
            *["-k", "promoter or ramp or starter or function or index"],
        ],
    ),
    # ---- the third wave: the ramp's sequential test and its steps (not the fleet tests: real servers, minutes) ---
    "sequential": (
        ["contracts/sequential.py"],
        [
            "tests/contracts/test_sequential.py",
            "tests/contracts/test_sequential_exact.py",
            "tests/trainer/test_ramp.py",
        ],
    ),
    "ramp": (["trainer/cloud/ramp.py"], ["tests/trainer/test_ramp.py", "tests/trainer/test_ramp_exact.py"]),
    # the signed index's check and the replay guard (in-process; test_index_forgery runs them in a real service)
    "index-verification": (
        ["service/index_verification.py", "contracts/index_verification.py"],
        [
            "tests/service/test_index_verification.py",
            "tests/service/test_index_verification_exact.py",
            "tests/service/test_index_replay.py",
        ],
    ),
    # ground truth: the record, the label route, the rows and live accuracy, in-process (the real service's test
    # runs the code in a subprocess, which mutmut cannot attribute to a mutant: it would only cost its minute; the
    # in-process live-accuracy test stays: it is the only one that reads /monitoring/accuracy's figures)
    "feedback": (
        ["service/feedback.py", "contracts/feedback.py"],
        [
            "tests/service/test_feedback.py",
            "tests/service/test_feedback_exact.py",
            "tests/contracts/test_accuracy_verdict.py",
            "tests/contracts/test_feedback_queries.py",
            *["-k", "not real_service"],
        ],
    ),
    # who may promote (issue 25): the requests to the promoter's jobs over the wire to the twin's Cloud Run, the
    # verdict read from the index, the job actions' refusal of an execution's settings
    "promotion": (
        ["trainer/cloud/promotion.py"],
        ["tests/trainer/test_promotion.py", "tests/trainer/test_promotion_wire.py"],
    ),
    # trusted promotion (issue 25): the index's signer (local key pair; Cloud KMS's request and reply checks), the
    # signature object, and the typed index every reader uses, with the registry tests that write and read it
    "trusted-index": (
        ["trainer/models/index_signing.py", "contracts/index_signature.py", "contracts/registry_index.py"],
        [
            "tests/contracts/test_registry_index.py",
            "tests/contracts/test_registry_index_exact.py",
            "tests/contracts/test_index_signature.py",
            "tests/trainer/test_index_signing.py",
            "tests/trainer/test_index_signing_exact.py",
            "tests/trainer/test_registry_index.py",
            "tests/trainer/test_registry.py",
            "tests/trainer/test_registry_races.py",
            "tests/service/test_index_verification.py",
            "tests/service/test_index_verification_exact.py",
            "tests/service/test_index_replay.py",
            *NO_EXPORT,
        ],
    ),
    # who may write, sign or act as the promoter (issue 25), on hand-written stacks as graph-policies; not the test
    # over the synthesized stacks: a synth per mutant, and none of the group's survivors differs on today's stacks
    "index-writers": (
        ["infra/index_writers.py"],
        ["tests/infra/test_index_writers.py", "tests/infra/test_index_writers_exact.py", "-k", "not let_only"],
    ),
    # the paired quality gate: the decision on hand-built probabilities, and `registry promote` on two
    # real ONNX models (a CNN trained once per group through TEST_MODEL_CACHE, a linear one built in milliseconds)
    "gate": (
        ["trainer/models/gate.py", "trainer/models/gate_sets.py"],
        [
            "tests/trainer/test_gate.py",
            "tests/trainer/test_gate_exact.py",
            "tests/trainer/test_gate_promotion.py",
            "tests/lifecycle/test_gate_summary.py",
        ],
    ),
    # one builder of the service's environment for Cloud Run and Vertex AI, and the export's speed record: pinned
    # value by value in-process (tests/infra/test_serving_contract.py checks the synthesized container: a synth per
    # mutant; the service's tests train a model)
    "serving-contract": (
        ["contracts/serving.py", "contracts/artifact_speed.py"],
        ["tests/contracts/test_serving_exact.py", "tests/contracts/test_artifact_speed.py"],
    ),
    # the fleet's PromQL and the verdict from its answers, in-process (a loopback Prometheus-shaped server for the
    # asker); not tests/service/test_fleet_*.py: real fleets of servers and a Prometheus, minutes a run
    "promql": (
        ["trainer/cloud/promql.py", "contracts/monitoring_queries.py"],
        [
            "tests/trainer/test_promql_exact.py",
            "tests/contracts/test_monitoring_queries.py",
            "tests/contracts/test_feedback_queries.py",
        ],
    ),
    # the step list as a kfp pipeline: its code runs only in kfp's own venv (`python -m lifecycle compile` with
    # .venv-kfp's interpreter), so the tests compile the real pipeline there and read the compiled YAML (KFP_GROUPS)
    "pipeline": (
        ["lifecycle/orchestration/pipeline.py"],
        ["tests/lifecycle/test_pipeline.py", "tests/lifecycle/test_pipeline_exact.py"],
    ),
    # the service's small wave-3 modules: every error reply, the caller's key and bucket, the model's error family;
    # in-process (the replies from a WSGI environ, as both the Flask handlers and the predict route call them)
    # the request body's one read of a declared length (werkzeug's stream otherwise): in-process WSGI environs
    "request-body": (["service/body.py"], ["tests/service/test_body.py"]),
    "service-small": (
        ["service/replies.py", "service/caller.py", "service/model_errors.py"],
        ["tests/service/test_replies_exact.py", "tests/service/test_caller.py", "tests/service/test_model_errors.py"],
    ),
    # the lifecycle's small wave-3 modules: the service client over the wire to a recording loopback server, the
    # local alert starter's webhook, `lifecycle publish` in kfp's venv (KFP_GROUPS); not the publish test that
    # compiles both real pipelines first (two kfp compilations per mutant: the upload is pinned without them)
    "lifecycle-small": (
        [
            "lifecycle/checks/http_check.py",
            "lifecycle/client.py",
            "lifecycle/alert_starter.py",
            "lifecycle/orchestration/publish.py",
        ],
        [
            "tests/lifecycle/test_http_check_exact.py",
            "tests/lifecycle/test_client_exact.py",
            "tests/lifecycle/test_alert_starter.py",
            "tests/lifecycle/test_alert_starter_exact.py",
            "tests/lifecycle/test_publish.py",
            *["-k", "not both_templates_go"],
        ],
    ),
    # the launcher of `python -m service`: a stand-in interpreter (a shell script serving a health file with
    # http.server) for the command, environment and port; a loopback health route beside a real `sleep` for the wait;
    # real process groups for the stop
    "served": (["lifecycle/served.py"], ["tests/lifecycle/test_served.py", "tests/lifecycle/test_served_exact.py"]),
    # `python -m lifecycle batch-predict`: the sources (PNG directory, gs:// prefix on fake-gcs-server, IDX file),
    # the spawned scorer pool against the live service, JSONL/Parquet, the command as a user runs it (subprocesses
    # whose hits CHILD_SITE records) and its --vertex request
    "batch-predict": (["lifecycle/batch/batch_predict.py"], ["tests/lifecycle/test_batch_predict.py"]),
    # the shadow step before the gate: its variables, figures, requests and printed lines over the wire to a
    # recording loopback service, in-process; then the champion with the candidate in shadow served by a real
    # `python -m service` (figures and summary rows), and the first run's "nothing to shadow"
    "shadow": (
        ["lifecycle/checks/shadow.py"],
        ["tests/lifecycle/test_shadow_exact.py", "tests/lifecycle/test_shadow.py"],
    ),
    # the hostile corpus (shared with bench/bench_hostile.py): each case's request to the byte and `send` over the
    # wire to a recording loopback server, in-process. Not tests/service/test_hostile.py (every case sent to a real
    # gunicorn worker): mutmut runs a mutant's fastest-recorded tests first, so its module fixture (a server and 81
    # requests, ~30 s at load 8) would start for every one of the ~1,000 mutants; without it the score is a floor
    "hostile-corpus": (["lifecycle/checks/hostile_corpus.py"], ["tests/lifecycle/test_hostile_corpus_exact.py"]),
    # `python -m lifecycle compile`: in-process what it hands the compiler (a recording stand-in), its line and its
    # errors; the compiled YAML of dev's and local's pipelines with kfp's interpreter (KFP_GROUPS)
    "compile": (
        ["lifecycle/orchestration/compile.py"],
        [
            "tests/lifecycle/test_compile_exact.py",
            "tests/lifecycle/test_pipeline.py",
            "tests/lifecycle/test_pipeline_exact.py",
        ],
    ),
    # `python -m lifecycle graph`: the DAG read from a compiled spec, in-process: a small spec in kfp's compiled shape
    # (the figure's boxes, labels and arrows as matplotlib holds them) and the real dev pipeline compiled by kfp
    "graph": (
        ["lifecycle/orchestration/graph.py"],
        ["tests/lifecycle/test_graph_exact.py", "tests/lifecycle/test_pipeline.py", "-k", "graph"],
    ),
    # the trainer's small wave-3 modules (the clients' endpoints, a pipeline task's gcp_resources and SIGTERM, the
    # upload's commit marker, the training options): their exact tests, ingest with a marker, the options through
    # resolve_config, and the batch prediction's publish and cancel over the wire to the Vertex AI fake
    "trainer-small": (
        [
            "trainer/cloud/endpoints.py",
            "trainer/cloud/gcp_resources.py",
            "trainer/data/commit_marker.py",
            "trainer/training/options.py",
        ],
        [
            "tests/trainer/test_endpoints_exact.py",
            "tests/trainer/test_gcp_resources_exact.py",
            "tests/trainer/test_commit_marker_exact.py",
            "tests/trainer/test_commit_marker.py",
            "tests/trainer/test_options_exact.py",
            "tests/trainer/test_options.py",
            "tests/trainer/test_batch_prediction_wire.py",
        ],
    ),
    # the small modules left without a group (issue 27): the service's mmap threshold, observed in-process through
    # glibc's mallinfo2 (tests/service/test_heap.py's probes run in children mutmut cannot attribute); the generated
    # IDX data; TensorBoard's gs:// mirror over the wire to fake-gcs-server
    "small-leftovers": (
        ["service/heap.py", "trainer/data/synthetic.py", "trainer/training/tensorboard.py"],
        [
            "tests/service/test_heap.py",
            "tests/service/test_heap_exact.py",
            "tests/trainer/test_synthetic_exact.py",
            "tests/trainer/test_tensorboard_mirror.py",
        ],
    ),
    # the fused batch normalization: which op the layer chooses, and that its numbers are Keras's (tiny tensors,
    # one step; TensorFlow in each forked child)
    "fused-batch-norm": (["trainer/training/fused_batch_norm.py"], ["tests/trainer/test_fused_batch_norm.py"]),
    # the lifecycle's door into the trainer: IDX decoding, a preset's training call (recorded), an ONNX graph built by
    # the test, the batch job's build and send (recorded), the local signer's public key
    "trainer-api": (["trainer/api.py"], ["tests/trainer/test_api.py", "tests/trainer/test_api_exact.py"]),
    # the starter's variables, built by the contract and read by the function's config, in-process: test_function.py
    # runs the function in a process of its own (mutmut cannot attribute it), test_pipelines.py synthesizes a stack
    "starter-config": (["contracts/starter.py", "starter/config.py"], ["tests/starter/test_config_exact.py"]),
    # the function's entry point: its handler in-process (statuses, answers, every variable in the PipelineJob), over
    # HTTP against the Vertex AI fake and fake-gcs-server; `start` and `_session` are decorated (mutmut leaves them)
    "starter-main": (["starter/main.py"], ["tests/starter/test_main_exact.py"]),
    # every Google Cloud name infra/ declares and the trainer finds, from hand-written CloudNames and from settings;
    # its @property names are decorated, so mutmut mutates only the methods (test_cloud_exact.py pins both)
    "cloud-names": (
        ["contracts/cloud.py"],
        ["tests/contracts/test_cloud_exact.py", "tests/contracts/test_layout_and_names.py"],
    ),
    # the provider's facts and the IAM table on hand-written stacks, with the simulator's tests that read the facts;
    # `python -m infra.iam_table` itself synthesizes (two tests; no test module imports cdktf, so the fork server
    # holds no jsii kernel and each child starts its own: not ONE_KERNEL). Not the tests over the session's synth
    "infra-facts": (
        ["infra/provider_facts.py", "infra/iam_table.py"],
        [
            "tests/infra/test_provider_facts_exact.py",
            "tests/infra/test_iam_table_exact.py",
            "tests/infra/test_simulate.py",
            "tests/infra/test_simulate_exact.py",
            *["-k", "not (synthesized_stacks or scan_reports)"],
        ],
    ),
    # the simulated plan, apply and destroy on hand-written stacks and stacks on disk; not the two tests over the
    # synthesized stacks (a synth per mutant: ~10 s each here)
    "simulate": (
        ["infra/simulate.py"],
        [
            "tests/infra/test_simulate.py",
            "tests/infra/test_simulate_exact.py",
            *["-k", "not (synthesized_stacks or scan_reports)"],
        ],
    ),
    # the starter's archive (in-process, read back as a zip), its custom role and the propagation waits, each pinned
    # on the synthesized stacks by an exact test of its own (paths, bodies, depends_on); one synth per mutant
    "infra-small": (
        ["infra/components/starter_source.py", "infra/components/starter_role.py", "infra/components/waits.py"],
        [
            "tests/infra/test_starter_source.py",
            "tests/infra/test_starter_role_exact.py",
            "tests/infra/test_waits_exact.py",
        ],
    ),
    # the deny policy on Vertex AI's custom code agent (synthesized bootstrap stacks) and its check (hand-built stacks)
    "vertex-agent": (
        ["infra/components/vertex_agent.py", "infra/vertex_agent_policy.py"],
        ["tests/infra/test_vertex_agent_policy.py", "tests/infra/test_vertex_agent_exact.py"],
    ),
    # the index's signing key and its signer grant (bootstrap stacks), its public key as the serving stacks read it
    "index-signing-infra": (
        ["infra/components/index_signing.py"],
        ["tests/infra/test_index_signing.py", "tests/infra/test_index_signing_exact.py"],
    ),
    # the service's secrets and the metrics sidecar's document, secret, container and volume (serving stacks)
    "serving-secrets": (
        ["infra/components/service_secrets.py", "infra/components/metrics_export.py"],
        ["tests/infra/test_service_secrets_exact.py"],
    ),
    # the ground-truth dataset, sink table, view, log sink and its writer (environment stacks)
    "ground-truth-infra": (
        ["infra/components/ground_truth.py"],
        ["tests/infra/test_ground_truth.py", "tests/infra/test_ground_truth_exact.py"],
    ),
    # one worker's serving state (503 reasons, counters, the model's info and drift gauges), the operator routes'
    # token check and the per-request bounds' shortening, in-process (the Flask app and the WSGI predict route);
    # not the tests that start gunicorn (two_workers, real_service): the code runs there in another process
    "service-state": (
        ["service/state.py", "service/admin.py", "service/limits.py"],
        [
            "tests/service/test_app.py",
            "tests/service/test_drift.py",
            "tests/service/test_metrics_deltas.py",
            "tests/service/test_predict_route_exact.py",
            "tests/service/test_request_parsing_exact.py",
            "tests/service/test_replies_exact.py",
            "tests/service/test_admin_exact.py",
            "tests/service/test_limits_exact.py",
            "tests/service/test_state_exact.py",
            "tests/service/test_rollout_report.py",  # an app with a challenger beside the champion
            *["-k", "not (two_workers or real_service)"],
        ],
    ),
    # the bootstrap stack's accounts, their project, account and billing grants, the state bucket, the service agents
    # and every stack's providers, pinned on the synthesized stacks (tests/infra/test_accounts_exact.py); the
    # Workbench's roles and users from test_workbench.py's synth with the Workbench on (those three tests only)
    "accounts-infra": (
        [
            "infra/components/accounts.py",
            "infra/components/service_agents.py",
            "infra/components/state.py",
            "infra/components/providers.py",
        ],
        [
            "tests/infra/test_accounts_exact.py",
            "tests/infra/test_workbench.py::test_on_its_own_account_holds_only_what_the_notebooks_need",
            "tests/infra/test_workbench.py::test_on_the_deployer_may_create_it_and_the_planner_read_it",
            "tests/infra/test_workbench.py::test_on_each_user_acts_as_its_account_at_an_address_of_its_own",
        ],
    ),
    # the images and serving stacks and every environment stack's backend, on the synthesized stacks: each stack's
    # state bucket and prefix, the order between stacks, the images' outputs, the serving APIs and output, the
    # Workbench's invoker grant (test_workbench.py's synth with the Workbench on: that one test, not the policy scans);
    # the serving stack's components by construct path and wiring (secrets, sidecar's port, promoter, ramp)
    "infra-stacks": (
        ["infra/serving_stack.py", "infra/images_stack.py", "infra/backend.py"],
        [
            "tests/infra/test_serving_stack_exact.py",
            "tests/infra/test_service_secrets_exact.py",
            "tests/infra/test_promoter_exact.py",
            "tests/infra/test_index_signing.py",  # the index's public key handed to Cloud Run
            "tests/infra/test_stack_split.py",
            "tests/infra/test_backend_and_paths.py",
            "tests/infra/test_workbench.py::test_on_the_workbench_may_invoke_the_service_and_only_that",
        ],
    ),
    # the deploy's preflight (placeholder settings, Docker daemon, registry password) and the destroy's endpoint
    # check, in-process; not the tests over the synthesized stacks or a real `terraform plan` (infra-guard's)
    "infra-preflight": (
        ["infra/preflight.py", "infra/endpoint_guard.py"],
        [
            "tests/infra/test_preflight.py",
            "tests/infra/test_preflight_exact.py",
            "tests/infra/test_endpoint_guard.py",
            "tests/infra/test_endpoint_guard_exact.py",
            *["-k", "not (carries_the_guard or synthesize_no_guard or terraform_plan)"],
        ],
    ),
    # the placeholder guard variable, on a one-stack synth in-process (tests/infra/test_guard_exact.py)
    "infra-guard": (["infra/guard.py"], ["tests/infra/test_guard_exact.py"]),
    # the feature function, the baseline's binning and PSI (pure numpy, in-process), and `trainer features`'s Parquet
    # table over a generated IDX dataset in a local bucket
    "features": (
        ["contracts/features.py", "trainer/data/features.py"],
        [
            "tests/contracts/test_features.py",
            "tests/contracts/test_feature_kernel.py",
            "tests/contracts/test_features_exact.py",
            "tests/trainer/test_features.py",
            "tests/trainer/test_features_exact.py",
        ],
    ),
    # the bucket layout's model references and version directories; contracts/dataset.py holds constants only
    # (mutmut mutates function bodies: no mutants), pinned by value in tests/contracts/test_layout_exact.py
    "layout": (
        ["contracts/layout.py", "contracts/dataset.py"],
        ["tests/contracts/test_layout_and_names.py", "tests/contracts/test_layout_exact.py"],
    ),
    # the feature table's BigQuery schema (pure Python: infra/ declares the table from it), pinned field by field
    "feature-schema": (
        ["contracts/feature_schema.py"],
        ["tests/contracts/test_features.py", "tests/contracts/test_feature_schema_exact.py"],
    ),
    # the images' content-hash tags: which files go in, which are skipped, the baked file inside the trainer image
    "images": (["contracts/images.py"], ["tests/contracts/test_images.py", "tests/contracts/test_images_exact.py"]),
    # `trainer tune` and its search space (issue 27, seventh session): the command in-process with `train` recorded
    # (study file, preset, printed lines, seed, timeout, the gcp dry run and the job over the wire to the Vertex AI
    # fake), the space on real Optuna trials; not test_tune.py's real two-trial search (35-90 s a mutant here): what
    # it checks of tune.py (trials, study file, saved preset) the recorded runs pin value by value
    "tune": (
        ["trainer/training/tune.py", "trainer/training/search_space.py"],
        [
            "tests/trainer/test_tune_exact.py",
            "tests/trainer/test_search_space_exact.py",
            "tests/trainer/test_tune.py",
            *["-k", "not local_search_records"],
        ],
    ),
    # every training run's record, in-process with a stepped clock (local files and the GCS emulator), and the record
    # of a real smoke training (test_train.py's one test that reads it; the session model is trained once a mutant)
    "run-record": (
        ["trainer/training/run_record.py"],
        [
            "tests/trainer/test_run_record_exact.py",
            "tests/trainer/test_train.py::test_a_run_writes_model_record_checkpoint_and_tensorboard",
        ],
    ),
    # the bootstrap stack: its local state, components by construct path, the key's admin, the index's signer, the
    # starter's member, the APIs' notes, the guard and its outputs, with a state bucket and without (the variant),
    # beside the exact tests of the components it wires (accounts and providers, signing key, starter role, teardown)
    "bootstrap": (
        ["infra/bootstrap.py"],
        [
            "tests/infra/test_bootstrap_exact.py",
            "tests/infra/test_accounts_exact.py",
            "tests/infra/test_index_signing_exact.py",
            "tests/infra/test_starter_role_exact.py",
            "tests/infra/test_vertex_agent_exact.py",
            "tests/infra/test_teardown.py",
        ],
    ),
    # the optional Workbench (test_workbench.py's synth with it on): every resource under `workbench/` whole, in
    # dev and prod; not the two checkov scans (a checkov run per mutant; the exact test pins what they check)
    "workbench": (
        ["infra/components/workbench.py"],
        ["tests/infra/test_workbench.py", *["-k", "not (policy_scan or scan_fails)"]],
    ),
    # ---- the second wave's trainer modules left without a group (issue 27, seventh session) ----------------------
    # the model directory's files and checks, on a local directory and over the wire to fake-gcs-server, with a
    # two-layer Keras model and an ONNX graph built by the tests (a real training: test_train.py, minutes a mutant)
    "model-dir": (
        ["trainer/models/model_dir.py"],
        ["tests/trainer/test_model_dir_exact.py", "tests/trainer/test_api_exact.py"],
    ),
    # the exit statuses (the gate's 3 through `trainer.cli.main`), the structured log line and the timestamp format
    "trainer-errors": (["trainer/errors.py", "trainer/clock.py"], ["tests/trainer/test_errors_exact.py"]),
    # the two Keras patches multi-worker training needs, on a real tf.distribute strategy in-process (the two-worker
    # training of tests/trainer/test_distributed.py runs them in processes mutmut cannot attribute)
    "keras-patches": (["trainer/training/keras_patches.py"], ["tests/trainer/test_keras_patches.py"]),
    # the demo preset's precision by CPU (issue 26, seventh session): /proc/cpuinfo's flags read exactly
    "native-bf16": (["trainer/training/native_bf16.py"], ["tests/trainer/test_native_bf16.py"]),
    # the TensorFlow training batches (issue 26, ninth session): every row once, a new order per epoch, the options
    "input-pipeline": (["trainer/training/input_pipeline.py"], ["tests/trainer/test_input_pipeline.py"]),
    # the model builder: every ModelSpec knob changes the graph it says (a silent one trains another model)
    "model": (["trainer/training/model.py"], ["tests/trainer/test_model.py"]),
    # what a run ends with: batch normalization statistics measured again for averaged weights, and the schedules
    "training-schedule": (
        ["trainer/training/batch_norm_statistics.py", "trainer/training/schedules.py"],
        ["tests/trainer/test_batch_norm_statistics.py", "tests/trainer/test_schedules.py"],
    ),
    # ---- the notebooks' thin layers (issue 27, seventh session, late) ---------------------------------------------
    # the notebook's service client: each target over the wire to a recording loopback server (the local launch and
    # aiplatform.Endpoint recorded), gcloud's token from a stand-in on PATH; not the tests over the session's
    # explored world (a smoke training and a served model, once a mutant here)
    "notebook-client": (
        ["lifecycle/notebook/service_client.py"],
        ["tests/notebooks/test_explore.py", "tests/notebooks/test_service_client_exact.py", *NO_WORLD],
    ),
    # the notebooks' helpers (tables, figures read as matplotlib Figures, drift) on hand-made inputs, without the
    # explored world
    "notebook-explore": (
        ["lifecycle/notebook/explore.py"],
        ["tests/notebooks/test_explore.py", "tests/notebooks/test_explore_exact.py", *NO_WORLD],
    ),
    # the headless runner and its command on tiny notebooks written by the tests (a real kernel each); not the three
    # committed notebooks (minutes each, on the session's explored world)
    "notebook-runner": (
        ["lifecycle/notebook/notebook_runner.py"],
        [
            "tests/notebooks/test_notebooks.py",
            "tests/notebooks/test_notebook_runner_exact.py",
            *["-k", "not (explore_data or train_evaluate or call_the_service)"],
        ],
    ),
}
PACKAGES = ["contracts", "storage", "settings", "trainer", "service", "lifecycle", "infra", "starter"]
# argparse help text: read by people, asserted by nobody; a mutant there is not a bug;
# progress bars: cosmetic, and off when output is not a terminal (as in every test), so no test can see them
DO_NOT_MUTATE_PATTERNS = [r"help=", r"metavar=", r"tqdm", r"\bbar\.update\("]
# groups whose tests synthesize cdktf stacks: the fork server's test collection imports the provider, which starts
# the jsii kernel (a node process that spends ~10 s loading the provider's assembly) before it forks, so every
# mutant's child talks to that one kernel over the same pipes (jsii does not restart it after a fork). One child
# at a time reads its own replies and skips the 10 s load (a mutant in ~4.5 s at load 13; two sampled kills
# failed the same way run alone); two at once interleave their requests and replies on one pipe.
ONE_KERNEL = {
    "infra-pipelines",
    "promoter-infra",
    "infra-small",
    "vertex-agent",
    "index-signing-infra",
    "serving-secrets",
    "ground-truth-infra",
    "infra-stacks",
    "infra-guard",
    "accounts-infra",
    "bootstrap",
    "workbench",
}
# groups whose code runs in a child process of kfp's interpreter (.venv-kfp): the mutated copy imports mutmut's
# trampolines, so the child gets a path entry holding mutmut's package alone (kfp's venv stays as it is; mutmut
# itself imports only the standard library there), and KFP_PYTHON names that interpreter (the scratch copy has
# no .venv-kfp). While mutmut maps tests to functions ("stats") it records the functions each test reached in its
# own process; a child's would be lost (its mutants would count as "no tests"), so the child's sitecustomize
# appends them to a file that tests/mutate_children.py credits to the test that started the child.
# graph: its code runs in the test's process, but its test of the real dev pipeline compiles it with kfp's
# interpreter first (KFP_PYTHON: the scratch copy has no .venv-kfp, and the test would be skipped)
KFP_GROUPS = {"pipeline", "lifecycle-small", "compile", "graph"}
CHILD_SITE = """\
import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("MUTMUT_CHILD_HITS"):
    import atexit

    def _save_hits():
        from mutmut.state import state

        with open(os.environ["MUTMUT_CHILD_HITS"], "a", encoding="utf-8") as fh:
            fh.write("".join(name + "\\n" for name in sorted(state()._stats)))

    atexit.register(_save_hits)
"""
KILLED = {"killed", "timeout", "segfault"}  # a timeout or a crash is the tests noticing the mutant too (counted apart)


def scratch_copy() -> Path:
    """Tracked and untracked-but-not-ignored files of the worktree, in a temporary directory."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = Path(tempfile.mkdtemp(prefix="mutate-"))
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def configure(
    tree: Path, files: list[str], tests: list[str], *, child_hits: bool = False, one_kernel: bool = False
) -> None:
    """The group's [tool.mutmut] section (JSON lists of plain strings are TOML arrays)."""
    others = sorted(p.name for p in tree.iterdir() if p.name not in PACKAGES and p.name != "tests")
    # a ONE_KERNEL group's fork server loads the provider itself (`-p infra.stack` imports it): where no test
    # module imports a provider (they synthesize through the `synth` fixture), collection would not start the
    # kernel and every mutant's child would start its own and load the assembly again (~60 s a mutant at load 15)
    kernel = ["-p", "infra.stack"] if one_kernel else []
    settings = {
        "source_paths": PACKAGES,
        "only_mutate": files,
        "also_copy": others,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": [
            *["-p", "no:cacheprovider", "-q", "-x", *kernel],
            *(["-p", "tests.mutate_children"] * child_hits),
        ],
        "do_not_mutate_patterns": DO_NOT_MUTATE_PATTERNS,
        # fork each mutant from a process that ran no test: a worker forked from the test process inherits
        # locks held by its threads (tqdm's, the emulator client's) and hangs, which would pass for a kill
        "process_isolation": os.environ.get("MUTATE_ISOLATION", "forkserver"),
        "timeout_multiplier": 5.0,
        "timeout_constant": 30.0,  # two shared cores: a slow run must not pass for a kill
    }
    with open(tree / "pyproject.toml", "a", encoding="utf-8") as fh:
        fh.write("\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))


def results(tree: Path) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=tree, capture_output=True, text=True
    ).stdout
    return dict(re.findall(r"^\s*(\S+__mutmut_\d+): (.+)$", out, flags=re.M))


def module_of(mutant: str) -> str:
    return mutant.split(".x_")[0].split(".xǁ")[0]


def show(tree: Path, mutant: str) -> str:
    diff = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant], cwd=tree, capture_output=True, text=True
    ).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return " | ".join(line.strip() for line in changed)


def kfp_children(tree: Path) -> dict[str, str]:
    """The environment that lets a child of kfp's interpreter run the mutated code (KFP_GROUPS says why)."""
    import mutmut

    package = Path(mutmut.__file__).parent
    site = tree / ".mutmut-children"
    site.mkdir()
    for entry in [package, *package.parent.glob(f"mutmut-{mutmut.__version__}.dist-info")]:
        (site / entry.name).symlink_to(entry)
    (site / "sitecustomize.py").write_text(CHILD_SITE, encoding="utf-8")
    kfp_python = Path(os.environ.get("KFP_PYTHON", ROOT / ".venv-kfp" / "bin" / "python"))
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    hits = tree / "mutants" / ".child-hits"
    return {"PYTHONPATH": path, "KFP_PYTHON": str(kfp_python.absolute()), "MUTMUT_CHILD_HITS": str(hits)}


def run_group(name: str, max_children: int) -> tuple[dict[str, Counter], list[tuple[str, str, str]]]:
    files, tests = GROUPS[name]
    if name in ONE_KERNEL:
        max_children = 1
    tree = scratch_copy()
    configure(tree, files, tests, child_hits=name in KFP_GROUPS, one_kernel=name in ONE_KERNEL)
    # the service's test model is trained once per group, not once per mutant (tests/service/conftest.py)
    env = {**os.environ, "TEST_MODEL_CACHE": str(tree / ".test-model-cache")}
    if name in KFP_GROUPS:
        env.update(kfp_children(tree))
    started = time.monotonic()
    only = os.environ.get("MUTATE_ONLY", "").split()  # mutmut takes mutant names and globs as arguments
    run = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *only],
        cwd=tree,
        capture_output=True,
        text=True,
        env=env,
    )
    statuses = results(tree)
    if not statuses:
        print(f"== {name}: mutmut produced no results\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    per_module: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for mutant, status in sorted(statuses.items()):
        if only and status == "not checked":  # outside the selection: not run, not counted
            continue
        per_module[module_of(mutant)][status] += 1
        if status not in KILLED:
            survivors.append((mutant, status, show(tree, mutant)))
    counted = sum(sum(c.values()) for c in per_module.values())
    print(f"== {name}: {counted} mutants{' selected' if only else ''} in {time.monotonic() - started:.0f} s")
    if os.environ.get("MUTATE_KEEP"):
        print(f"   scratch copy kept in {tree}")
    else:
        shutil.rmtree(tree, ignore_errors=True)
    return per_module, survivors


def main(argv: list[str]) -> int:
    names = argv or list(GROUPS)
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        print(f"unknown group(s) {unknown}; known: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    max_children = int(os.environ.get("MUTATE_CHILDREN", "2"))
    table, all_survivors = {}, []
    for name in names:
        per_module, survivors = run_group(name, max_children)
        table.update(per_module)
        all_survivors += survivors
    print(f"\n{'module':<34}{'mutants':>8}{'killed':>8}{'timeout':>8}{'survived':>9}{'score':>8}")
    for module, counts in sorted(table.items()):
        total, killed = sum(counts.values()), sum(counts[s] for s in KILLED)
        print(
            f"{module:<34}{total:>8}{killed - counts['timeout']:>8}{counts['timeout']:>8}{total - killed:>9}"
            f"{killed / total:>8.1%}"
        )
    print(f"\nsurvivors ({len(all_survivors)}):")
    for mutant, status, diff in all_survivors:
        print(f"  {mutant} [{status}]: {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
