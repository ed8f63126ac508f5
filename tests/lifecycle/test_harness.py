"""The compiled-pipeline harness (`python -m lifecycle run-compiled`) on a kfp-compiled fixture, in-process: what each
task is given (executor input, env, job name), what is read back (the file wins over the executor output), which
side of a gate runs, and every refusal with the task it names. The fixture is kfp's own output, committed
(tests/lifecycle/harness_pipeline.py compiles it again where kfp is installed); tests/lifecycle/test_pipeline.py runs
the lifecycle's own compiled pipeline end to end, which needs kfp's venv and so is not in the mutation group."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from contracts.layout import BUCKET_KINDS
from lifecycle.orchestration import run_compiled as harness
from lifecycle.orchestration.run_compiled import (
    CompiledRunFailed,
    Harness,
    InImage,
    condition_holds,
    main,
    run_compiled,
    topological,
)
from tests.lifecycle.test_pipeline import KFP_PYTHON, needs_kfp

FIXTURE = Path(__file__).with_name("harness_pipeline.yaml")
DATASET = {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}


def spec() -> dict:
    return yaml.safe_load(FIXTURE.read_text())


def executor_args(doc: dict, label: str) -> list[str]:
    return doc["deploymentSpec"]["executors"][label]["container"]["args"]


@needs_kfp
def test_the_fixture_is_what_kfp_compiles_from_its_source(tmp_path):
    output = tmp_path / "harness.yaml"
    source = FIXTURE.with_suffix(".py")
    subprocess.run([str(KFP_PYTHON), str(source), str(output)], check=True, timeout=120)
    assert yaml.safe_load(output.read_text()) == spec()


def test_a_promoted_gate_runs_its_side_with_the_artifacts_parameters_and_job_name_passed_on(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    work = tmp_path / "work"
    lines: list[str] = []
    run = run_compiled(FIXTURE, work, "harness-check-1", log=lines.append)
    assert run.job_name == "harness-check-1"
    assert list(run.tasks) == ["make", "gate", "use"] and run.skipped == ["condition-2"]
    data = {"name": "data", "uri": str(work / "make" / "data"), "metadata": {"rows": 3}}
    # count: its output file wins over the executor output's value; label: only in the executor output
    assert run.tasks["make"].parameters == {"count": "3", "label": "from-the-spec"}  # the task's env reached it
    assert run.tasks["make"].artifacts == {"data": data}
    assert run.tasks["gate"].parameters == {"outcome": "promoted"} and run.tasks["gate"].artifacts == {}
    # what the make task was told to write, as the Vertex AI launcher tells it
    assert json.loads(Path(data["uri"]).read_text()) == {
        "artifacts": {
            "data": {
                "artifacts": [{"name": "data", "type": DATASET, "uri": str(work / "make" / "data"), "metadata": {}}]
            }
        },
        "parameters": {
            "count": {"outputFile": str(work / "make" / "count")},
            "label": {"outputFile": str(work / "make" / "label")},
        },
        "outputFile": str(work / "make" / "executor_output.json"),
    }
    seen = json.loads(run.tasks["use"].parameters["seen"])
    assert seen == {
        "inputs": {"artifacts": {"data": {"artifacts": [data]}}, "parameterValues": {"count": "3"}},
        "outputs": {
            "artifacts": {},
            "parameters": {"seen": {"outputFile": str(work / "use" / "seen")}},
            "outputFile": str(work / "use" / "executor_output.json"),
        },
        "job": "harness-check-1",
    }
    assert all(0 < task.seconds < 600 for task in run.tasks.values())  # each task's own wall time
    commands = [line for line in lines if line.startswith("\n== task ")]
    assert (
        commands[0]
        == f"\n== task make\n$ {sys.executable} -c {executor_args(spec(), 'exec-make')[1]} '<executor input>'"
    )
    assert [c.split("\n")[1] for c in commands] == ["== task make", "== task gate", "== task use"]
    assert commands[2].endswith(" '<executor input>' harness-check-1")
    assert "-- condition-2: condition false, skipped" in lines
    assert [
        re.sub(r"[0-9.]+ s$", "N s", line) for line in lines if line.startswith("-- ") and "skipped" not in line
    ] == [
        "-- make: N s",
        "-- gate: N s",
        "-- use: N s",
    ]


def test_a_refused_gate_runs_the_other_side_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "refused")
    run = run_compiled(FIXTURE, tmp_path / "work", "harness-check-2", log=lambda *_: None)
    assert list(run.tasks) == ["make", "gate", "other"] and run.skipped == ["condition-1"]
    seen = json.loads(run.tasks["other"].parameters["seen"])
    assert seen["inputs"] == {"artifacts": {}, "parameterValues": {"outcome": "refused"}} and seen["job"] == "refused"


def test_an_operator_variable_reaches_a_local_task_but_the_task_s_own_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "refused")
    monkeypatch.setenv("HARNESS_TASK_ENV", "from-the-operator")
    run = run_compiled(FIXTURE, tmp_path / "work", "j", log=lambda *_: None)
    assert run.tasks["make"].parameters["label"] == "from-the-spec"


def _harness(tmp_path: Path, doc: dict) -> Harness:
    return Harness(doc, tmp_path / "work", "j", log=lambda *_: None)


def test_a_failing_task_stops_the_run_naming_the_task_and_its_status(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    doc = spec()
    executor_args(doc, "exec-gate")[1] = "import sys; sys.exit(3)"
    run = _harness(tmp_path, doc)
    with pytest.raises(CompiledRunFailed) as raised:
        run.execute()
    assert str(raised.value) == "task 'gate' exited with 3; its output is above"
    assert list(run.run.tasks) == ["make"]


def test_a_task_past_its_time_is_stopped_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "TASK_TIMEOUT_S", 0.5)
    doc = spec()
    executor_args(doc, "exec-make")[1] = "import time; time.sleep(30)"
    with pytest.raises(CompiledRunFailed) as raised:
        _harness(tmp_path, doc).execute()
    assert str(raised.value) == "task 'make' ran past 0.5 s"


def test_an_output_the_task_did_not_produce_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    doc = spec()
    executor_args(doc, "exec-make")[1] = "pass"
    with pytest.raises(CompiledRunFailed) as raised:
        _harness(tmp_path / "a", doc).execute()
    assert str(raised.value) == "task 'make' declared output artifact 'data' but did not report it"
    doc = spec()
    executor_args(doc, "exec-gate")[1] = "pass"
    with pytest.raises(CompiledRunFailed) as raised:
        _harness(tmp_path / "b", doc).execute()
    assert str(raised.value) == "task 'gate' declared output parameter 'outcome' but did not write it"


def test_a_placeholder_or_an_input_the_harness_does_not_fill_is_refused_before_the_task_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    doc = spec()
    executor_args(doc, "exec-make").append("{{$.inputs.parameters['x']}}")
    run = _harness(tmp_path / "a", doc)
    with pytest.raises(CompiledRunFailed) as raised:
        run.execute()
    assert (
        str(raised.value) == "task 'make' uses placeholder {{$.inputs.parameters['x']}} that this harness does not fill"
    )
    assert run.run.tasks == {}
    doc = spec()
    doc["components"]["comp-condition-1"]["dag"]["tasks"]["use"]["inputs"]["parameters"]["count"] = {
        "runtimeValue": {"constant": "3"}
    }
    with pytest.raises(CompiledRunFailed) as raised:
        _harness(tmp_path / "b", doc).execute()
    assert str(raised.value) == "input parameter count: only task outputs are wired by this harness"


def test_conditions_are_string_comparisons_either_way_and_anything_else_is_refused():
    name = "inputs.parameter_values['pipelinechannel--gate-outcome']"
    values = {"pipelinechannel--gate-outcome": "promoted"}
    assert condition_holds(f"{name} == 'promoted'", values) is True
    assert condition_holds(f"{name} == 'refused'", values) is False
    assert condition_holds(f"{name} != 'promoted'", values) is False
    assert condition_holds(f"{name} != 'refused'", values) is True
    assert condition_holds(f"{name} == ''", {"pipelinechannel--gate-outcome": ""}) is True
    for condition in (f"{name} > 'a'", f"{name} == 'a' and x", f"x {name} == 'a'", "int(inputs.x) == 1"):
        with pytest.raises(CompiledRunFailed) as raised:
            condition_holds(condition, values)
        assert str(raised.value) == f"condition {condition!r} is not a string comparison this harness evaluates"


def test_tasks_run_after_their_producers_ties_by_name_and_a_cycle_is_refused():
    output = {"taskOutputParameter": {"producerTask": "a", "outputParameterKey": "x"}}
    artifact = {"taskOutputArtifact": {"producerTask": "c", "outputArtifactKey": "y"}}
    tasks = {
        "d": {},
        "b": {"inputs": {"parameters": {"x": output}}},  # after a, through its input only
        "a": {"inputs": {"artifacts": {"y": artifact}}},  # after c, through its input only
        "c": {"dependentTasks": ["d"]},
    }
    assert topological(tasks) == ["d", "c", "a", "b"]
    assert topological({"z": {}, "y": {}, "x": {}}) == ["x", "y", "z"]
    with pytest.raises(CompiledRunFailed) as raised:
        topological({"a": {"dependentTasks": ["b"]}, "b": {"dependentTasks": ["a"]}, "c": {}})
    assert str(raised.value) == "the DAG has a cycle among ['a', 'b']"


def test_in_the_image_a_task_gets_its_command_its_env_and_the_mounts_and_nothing_else(tmp_path, monkeypatch):
    image = InImage("localhost/fmnist-trainer:t", tmp_path / "root", {"P": "platform", "A": "platform"}, "host")
    command = image.command("train", ["python3", "-m", "trainer", "train"], {"A": "task", "B": "b"}, tmp_path / "w")
    name = command[command.index("--name") + 1]
    assert re.fullmatch(r"compiled-train-[0-9]+", name)
    volumes = [f"{tmp_path / 'w'}:/gcs/pipeline-root:U"] + [
        f"{(tmp_path / 'root').resolve() / folder}:/gcs/{folder}:U" for folder in (*BUCKET_KINDS, "promoter")
    ]
    assert command == [
        harness.PODMAN,
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--no-healthcheck",
        *[option for volume in volumes for option in ("--volume", volume)],
        *["--env", "A=task", "--env", "B=b", "--env", "P=platform"],
        "--entrypoint",
        '["python3"]',
        "localhost/fmnist-trainer:t",
        "-m",
        "trainer",
        "train",
    ]
    assert str(harness.REPO / "scripts" / "podman.sh") == harness.PODMAN and Path(harness.PODMAN).is_file()
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == sorted([*BUCKET_KINDS, "promoter"])
    assert image.command("export", ["python3"], {}, tmp_path / "w")[-1] == "localhost/fmnist-trainer:t"  # next task
    monkeypatch.chdir(tmp_path)  # a relative storage root is mounted by its absolute path (podman needs one)
    relative = InImage("i", Path("root")).command("t", ["python3"], {}, tmp_path / "w")
    assert f"{tmp_path / 'root' / 'dev'}:/gcs/dev:U" in relative
    bare = InImage("i").command("t", ["python3"], {}, tmp_path / "w")
    assert bare[bare.index("--network") + 1] == "none"
    assert bare[bare.index("--no-healthcheck") + 1 :] == ["--volume", f"{tmp_path / 'w'}:/gcs/pipeline-root:U",
                                                          "--entrypoint", '["python3"]', "i"]  # fmt: skip


def test_in_the_image_the_task_is_told_the_container_s_paths(tmp_path, monkeypatch):
    """podman here is a stand-in that records its arguments: the container run itself is tests/containers'."""
    recorder = tmp_path / "podman"
    calls = tmp_path / "calls.jsonl"
    recorder.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"record = {{'argv': sys.argv[1:], 'env': 'HARNESS_MARK' in os.environ}}\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(record) + '\\n')\n"
        "sys.exit(7)\n"
    )
    recorder.chmod(0o755)
    monkeypatch.setattr(harness, "PODMAN", str(recorder))
    monkeypatch.setenv("HARNESS_MARK", "1")
    with pytest.raises(CompiledRunFailed, match="task 'make' exited with 7"):
        run_compiled(FIXTURE, tmp_path / "work", "j", log=lambda *_: None, in_image=InImage("img"))
    [call] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert re.fullmatch(r"compiled-make-[0-9]+", call["argv"][call["argv"].index("--name") + 1])  # the task's own
    assert call["env"] is True  # podman itself runs with the operator's environment (its storage, its config)
    executor_input = json.loads(call["argv"][call["argv"].index("img") + 3])
    assert executor_input["outputs"]["outputFile"] == "/gcs/pipeline-root/make/executor_output.json"
    assert executor_input["outputs"]["artifacts"]["data"]["artifacts"][0]["uri"] == "/gcs/pipeline-root/make/data"
    assert "--env" in call["argv"] and "HARNESS_TASK_ENV=from-the-spec" in call["argv"]
    assert call["argv"][call["argv"].index("--volume") + 1] == f"{tmp_path / 'work'}:/gcs/pipeline-root:U"
    assert not any(a.startswith("HARNESS_MARK") for a in call["argv"])


def test_in_the_image_a_host_storage_root_in_the_spec_is_refused_at_once(tmp_path):
    doc = spec()
    doc["deploymentSpec"]["executors"]["exec-make"]["container"]["env"].append(
        {"name": "FMNIST_STORAGE_ROOT", "value": "/home/me/.mlops"}
    )
    with pytest.raises(CompiledRunFailed) as raised:
        Harness(doc, tmp_path, "j", in_image=InImage("img", tmp_path))
    assert str(raised.value) == (
        "exec-make was compiled with FMNIST_STORAGE_ROOT=/home/me/.mlops, a path of the compiling machine: in the "
        "image the buckets are at /gcs/<bucket>; compile with FMNIST_STORAGE_ROOT=/gcs"
    )
    no_env = copy.deepcopy(spec())
    Harness(no_env, tmp_path, "j", in_image=InImage("img"))  # no bucket used: no storage root needed
    doc["deploymentSpec"]["executors"]["exec-make"]["container"]["env"][-1]["value"] = "/gcs"
    with pytest.raises(CompiledRunFailed) as raised:
        Harness(doc, tmp_path, "j", in_image=InImage("img"))
    assert str(raised.value) == "exec-make uses the local target's buckets: pass --storage-root DIR"


def test_the_command_prints_each_task_s_time_and_outputs_and_the_skipped_side(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    started = time.perf_counter()
    assert main([str(FIXTURE), "--job-name", "harness-check-9"]) == 0
    elapsed = time.perf_counter() - started
    out = capsys.readouterr().out
    reported = float(out.split(f"ran 3 tasks of {FIXTURE} in ")[1].split(" s\n")[0])
    assert 0 < reported <= elapsed + 0.05  # the run's own wall time
    summary = out[out.index("\nran ") :]
    lines = summary.splitlines()[1:]
    assert re.fullmatch(rf"ran 3 tasks of {re.escape(str(FIXTURE))} in [0-9]+\.[0-9] s", lines[0])
    timed = [re.sub(r"^(  .{20} ) *[0-9]+\.[0-9] s", r"\1N s", line) for line in lines[1:]]
    assert [len(line.split(" s  ")[0]) for line in lines[1:4]] == [30, 30, 30]  # the time right-aligned in 7
    assert timed == [
        "  make                 N s  label=from-the-spec, count=3",
        "  gate                 N s  outcome=promoted",
        f"  use                  N s  seen={summary.split('seen=')[1].splitlines()[0]}",
        "  condition-2          skipped (condition false)",
    ]
    assert '"job": "harness-check-9"' in summary


def test_the_command_reports_a_stopped_run_on_stderr_with_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    doc = spec()
    executor_args(doc, "exec-gate")[1] = "import sys; sys.exit(4)"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    assert main([str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "\ncompiled run stopped: task 'gate' exited with 4; its output is above\n"
    assert "\nran " not in captured.out


def test_the_command_s_options_reach_the_in_image_run(tmp_path, monkeypatch):
    given = {}

    def record(path, workdir, job_name, python=sys.executable, log=print, in_image=None):
        given.update(path=path, job_name=job_name, in_image=in_image, workdir=workdir)
        return harness.CompiledRun(job_name)

    monkeypatch.setattr(harness, "run_compiled", record)
    argv = [str(FIXTURE), "--in-image", "img:1", "--storage-root", str(tmp_path), "--network", "host"]
    assert main([*argv, "--platform-env", "A=1=2", "--platform-env", "B="]) == 0
    assert given["in_image"] == InImage("img:1", tmp_path, {"A": "1=2", "B": ""}, "host")
    assert given["path"] == FIXTURE and given["job_name"].startswith("fmnist-lifecycle-")
    assert re.fullmatch(r"fmnist-lifecycle-[0-9]{14}", given["job_name"])
    assert main([str(FIXTURE), "--in-image", "img:1", "--volume", "ca.pem:/ca.pem:ro", "--volume", "a:/a"]) == 0
    assert given["in_image"] == InImage("img:1", None, {}, "none", ("ca.pem:/ca.pem:ro", "a:/a"))  # the twin's CA
    assert main([str(FIXTURE), "--in-image"]) == 0
    assert given["in_image"] == InImage(harness.default_image(), None, {}, "none")
    from contracts.images import source_tag

    assert harness.default_image() == f"localhost/fmnist-trainer:{source_tag('trainer')}"
    assert main([str(FIXTURE), "--job-name", "x"]) == 0 and given["in_image"] is None and given["job_name"] == "x"
    with pytest.raises(SystemExit):
        main([str(FIXTURE), "--platform-env", "A=1"])


def test_the_command_names_itself_in_its_usage_and_says_what_it_does(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(FIXTURE), "--storage-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m lifecycle run-compiled ")
    assert err.endswith(
        "python -m lifecycle run-compiled: error: --storage-root, --platform-env and --volume apply to --in-image "
        "runs only\n"
    )
    with pytest.raises(SystemExit):
        main(["--help"])
    described = "`python -m lifecycle run-compiled PIPELINE.yaml`: execute a compiled pipeline's container tasks"
    assert f" {described} on this machine. " in " ".join(capsys.readouterr().out.split())  # argparse re-wraps it


def test_the_default_job_name_is_the_utc_time_whatever_the_local_zone(monkeypatch):
    given = {}
    monkeypatch.setattr(harness, "run_compiled", lambda path, workdir, job_name, **_: given.update(name=job_name))
    monkeypatch.setattr(harness.time, "gmtime", lambda: time.struct_time((2026, 12, 7, 4, 0, 0, 0, 341, 0)))
    with pytest.raises(AttributeError):  # the stand-in returns no run: the name was chosen before
        main([str(FIXTURE)])
    assert given["name"] == "fmnist-lifecycle-20261207040000"


def test_an_executor_without_a_container_is_no_bucket_user(tmp_path):
    doc = spec()
    doc["deploymentSpec"]["executors"]["exec-importer"] = {"importer": {"artifactUri": {"constant": "gs://b/x"}}}
    Harness(doc, tmp_path, "j", in_image=InImage("img"))  # an importer has no env: nothing to refuse


def test_a_dag_task_without_a_trigger_policy_always_runs(tmp_path, monkeypatch):
    """kfp compiles a sub-pipeline or an exit handler as a DAG task with no triggerPolicy: its tasks run."""
    monkeypatch.setenv("HARNESS_OUTCOME", "refused")
    doc = spec()
    del doc["root"]["dag"]["tasks"]["condition-1"]["triggerPolicy"]
    run = _harness(tmp_path, doc).execute()
    assert list(run.tasks) == ["make", "gate", "use", "other"] and run.skipped == []


def test_a_task_that_declares_no_outputs_is_told_none_and_reports_none(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUTCOME", "refused")
    doc = spec()
    del doc["components"]["comp-other"]["outputDefinitions"]  # a component that only acts (a deploy, a notice)
    told = tmp_path / "told.json"
    args = executor_args(doc, "exec-other")
    args[1], args[3] = "import sys; open(sys.argv[2], 'w').write(sys.argv[1])", str(told)
    run = _harness(tmp_path, doc).execute()
    assert run.tasks["other"].parameters == {} and run.tasks["other"].artifacts == {}
    assert json.loads(told.read_text())["outputs"] == {
        "artifacts": {},
        "parameters": {},
        "outputFile": str(tmp_path / "work" / "other" / "executor_output.json"),
    }


def test_only_the_image_s_python3_becomes_this_interpreter_any_other_command_runs_as_it_is(tmp_path, monkeypatch):
    """`python3` is the image's interpreter, so locally it is the harness's `python`; a task whose command is another
    program (here this interpreter by its full path) runs that program, not the harness's `python`."""
    monkeypatch.setenv("HARNESS_OUTCOME", "promoted")
    marks = tmp_path / "marks"
    wrapper = tmp_path / "python"  # the harness's `python`: records that it ran, then is this interpreter
    wrapper.write_text(f'#!/bin/sh\necho "$2" | head -c 12 >> {marks}\necho >> {marks}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    doc = spec()
    doc["deploymentSpec"]["executors"]["exec-gate"]["container"]["command"] = [sys.executable]
    run = Harness(doc, tmp_path / "work", "j", python=str(wrapper), log=lambda *_: None).execute()
    assert list(run.tasks) == ["make", "gate", "use"] and run.tasks["gate"].parameters == {"outcome": "promoted"}
    assert marks.read_text().splitlines() == [executor_args(doc, f"exec-{task}")[1][:12] for task in ("make", "use")]
