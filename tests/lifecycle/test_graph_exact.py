"""`python -m lifecycle graph` value by value on a small spec in kfp's compiled shape (written here, so no kfp):
the tasks and their commands, artifact and order edges through a condition's sub-DAG, the depths, and the picture's
boxes, labels, arrows and condition box as matplotlib draws them. The real dev pipeline is drawn in test_pipeline.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from lifecycle.orchestration.graph import Node, _condition_label, flatten, levels, main, render
from tests.lifecycle.test_pipeline import _once_or_per_test

CONDITION = "inputs.parameter_values['pipelinechannel--check-outcome'] == 'passed'"


def container(*args: str) -> dict:
    return {"container": {"image": "trainer", "args": list(args)}}


def step(*args: str) -> tuple[str, ...]:
    """A pipeline-step wrapper around `trainer ARGS`, as pipeline.py compiles every task."""
    return ("-m", "trainer", "--env", "dev", "pipeline-step", "--executor-input", "{{$}}", "--", *args)


def out(producer: str, key: str) -> dict:
    return {"taskOutputArtifact": {"producerTask": producer, "outputArtifactKey": key}}


SPEC = {
    "pipelineInfo": {"name": "tiny"},
    "sdkVersion": "kfp-2.17.0",
    "root": {
        "dag": {
            "tasks": {
                "ingest": {"componentRef": {"name": "comp-ingest"}},
                "check": {"componentRef": {"name": "comp-check"}},
                "train": {
                    "componentRef": {"name": "comp-train"},
                    "dependentTasks": ["check", "ingest"],
                    "inputs": {"artifacts": {"dataset": out("ingest", "dataset")}},
                },
                "condition-1": {
                    "componentRef": {"name": "comp-condition-1"},
                    "dependentTasks": ["train"],
                    "inputs": {"artifacts": {"pipelinechannel--train-model": out("train", "model")}},
                    "triggerPolicy": {"condition": CONDITION},
                },
                "report": {"componentRef": {"name": "comp-report"}, "dependentTasks": ["condition-1"]},
                "audit": {"componentRef": {"name": "comp-audit"}, "dependentTasks": ["train"]},
            }
        }
    },
    "components": {
        "comp-ingest": {"executorLabel": "exec-ingest"},
        "comp-check": {"executorLabel": "exec-check"},
        "comp-train": {"executorLabel": "exec-train"},
        "comp-report": {"executorLabel": "exec-report"},
        "comp-audit": {"executorLabel": "exec-audit"},
        "comp-deploy": {"executorLabel": "exec-deploy"},
        "comp-notify": {"executorLabel": "exec-notify"},
        "comp-condition-1": {
            "dag": {
                "tasks": {
                    "deploy": {
                        "componentRef": {"name": "comp-deploy"},
                        "inputs": {"artifacts": {"model": {"componentInputArtifact": "pipelinechannel--train-model"}}},
                    },
                    "notify": {"componentRef": {"name": "comp-notify"}, "dependentTasks": ["deploy"]},
                }
            }
        },
    },
    "deploymentSpec": {
        "executors": {
            "exec-ingest": container(*step("--env", "dev", "ingest", "--source", "gs://raw")),
            "exec-check": container("--env=local", "check", "all", "now"),  # no wrapper: every argument is trainer's
            "exec-train": container(*step("--env", "local", "train", "--preset", "demo")),
            "exec-report": container(*step("--env", "dev", "report")),
            "exec-audit": container(*step("--env", "dev", "audit")),
            "exec-deploy": container(*step("--env", "dev", "deploy-model", "champion", "now")),
            "exec-notify": container(*step("--env", "dev", "notify", "dev", "local", "x")),
        }
    },
}


def test_tasks_come_from_the_root_and_the_conditions_dag_with_their_edges_resolved():
    assert flatten(SPEC) == {
        "ingest": Node("ingest", "ingest --source"),
        "check": Node("check", "check all"),
        "train": Node("train", "train --preset", None, {"dataset": ("ingest", "dataset")}, {"check"}),
        # the condition's artifact input resolves to its producer outside, and its order edge reaches both tasks
        "deploy": Node(
            "deploy", "deploy-model champion", "if check.outcome == 'passed'", {"model": ("train", "model")}
        ),
        "notify": Node("notify", "notify x", "if check.outcome == 'passed'", {}, {"deploy", "train"}),
        "report": Node("report", "report"),  # its order edge on the condition group names no task: dropped
        "audit": Node("audit", "audit", None, {}, {"train"}),
    }


def test_a_task_sits_one_row_below_its_deepest_parent():
    assert levels(flatten(SPEC)) == {
        "ingest": 0,
        "check": 0,
        "report": 0,
        "train": 1,
        "deploy": 2,
        "audit": 2,
        "notify": 3,
    }


@pytest.mark.parametrize(
    ("condition", "label"),
    [
        (CONDITION, "if check.outcome == 'passed'"),
        ("inputs.parameter_values['pipelinechannel--my-gate-result_2'] == 'ok'", "if my-gate.result_2 == 'ok'"),
        ("inputs.parameter_values['x'] != 'y'", "inputs.parameter_values['x'] != 'y'"),  # unknown shape: as it is
        ("", ""),
    ],
)
def test_a_condition_reads_as_the_gate_and_its_value(condition, label):
    assert _condition_label(condition) == label


def draw(spec: dict, output: Path) -> tuple[Figure, Path]:
    """The figure render() draws (recorded as it closes it) and the file it wrote."""
    figures = []
    close = plt.close
    plt.close = lambda fig=None: (figures.append(fig), close(fig))[1]
    try:
        path = render(spec, output)
    finally:
        plt.close = close
    return figures[0], path


@pytest.fixture(scope=_once_or_per_test)  # per test while mutmut maps tests to functions (test_pipeline.py)
def drawn(tmp_path_factory):
    return draw(SPEC, tmp_path_factory.mktemp("graph") / "new" / "graph.png")


def rounded(values) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in values)


def test_the_picture_is_a_png_in_a_new_directory(drawn):
    figure, path = drawn
    assert path.name == "graph.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rounded(figure.get_size_inches()) == (13.2, 6.4) and figure.dpi == 110


def test_boxes_sit_in_rows_by_depth_with_conditional_tasks_first(drawn):
    (ax,) = drawn[0].axes
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert [rounded((b.get_x(), b.get_y(), b.get_width(), b.get_height())) for b in boxes] == [
        (3.9, 0.0, 3.0, 0.9),  # ingest (row 0 by name: check, ingest, report)
        (0.0, 0.0, 3.0, 0.9),  # check
        (0.0, -1.45, 3.0, 0.9),  # train
        (0.0, -2.9, 3.0, 0.9),  # deploy
        (0.0, -4.35, 3.0, 0.9),  # notify
        (7.8, 0.0, 3.0, 0.9),  # report
        (3.9, -2.9, 3.0, 0.9),  # audit: right of deploy (a row's conditional tasks come first, then by name)
    ]
    assert {(to_hex(b.get_facecolor()), to_hex(b.get_edgecolor()), b.get_linewidth()) for b in boxes} == {
        ("#e8f0fe", "#1a73e8", 1.2)
    }
    assert {b.get_boxstyle().pad for b in boxes} == {0.02}
    (group,) = [p for p in ax.patches if isinstance(p, Rectangle) and not isinstance(p, FancyBboxPatch)]
    assert rounded((group.get_x(), group.get_y(), group.get_width(), group.get_height())) == (-0.2, -4.55, 3.4, 2.9)
    assert (group.get_fill(), group.get_linestyle(), to_hex(group.get_edgecolor())) == (False, "--", "#b35900")
    assert rounded(ax.get_xlim()) == (-0.3, 13.0) and rounded(ax.get_ylim()) == (-4.65, 1.2)
    assert not ax.axison
    assert ax.get_title() == "tiny (compiled by kfp-2.17.0)"


def test_each_box_names_its_task_command_and_artifacts(drawn):
    (ax,) = drawn[0].axes
    texts = [
        (t.get_text(), rounded(t.get_position()), t.get_fontsize(), to_hex(t.get_color()), t.get_ha(), t.get_va())
        + (t.get_weight(), t.get_style())
        for t in ax.texts
    ]
    label = ("if check.outcome == 'passed'", (-0.1, -1.85), 8.0, "#b35900", "left", "baseline", "normal", "italic")
    assert texts[0] == label
    center = ("center", "center", "normal", "normal")
    assert texts[1:] == [
        ("ingest", (5.4, 0.684), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer ingest --source", (5.4, 0.432), 7.5, "#000000", *center),
        ("out: dataset", (5.4, 0.18), 7.0, "#0b5394", *center),
        ("check", (1.5, 0.684), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer check all", (1.5, 0.432), 7.5, "#000000", *center),
        ("train", (1.5, -0.766), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer train --preset", (1.5, -1.018), 7.5, "#000000", *center),
        ("in: dataset   out: model", (1.5, -1.27), 7.0, "#0b5394", *center),
        ("deploy", (1.5, -2.216), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer deploy-model champion", (1.5, -2.468), 7.5, "#000000", *center),
        ("in: model", (1.5, -2.72), 7.0, "#0b5394", *center),
        ("notify", (1.5, -3.666), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer notify x", (1.5, -3.918), 7.5, "#000000", *center),
        ("report", (9.3, 0.684), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer report", (9.3, 0.432), 7.5, "#000000", *center),
        ("audit", (5.4, -2.216), 9.5, "#000000", "center", "center", "bold", "normal"),
        ("trainer audit", (5.4, -2.468), 7.5, "#000000", *center),
    ]


def test_solid_arrows_carry_artifacts_dotted_ones_order_and_long_ones_bend_around(drawn):
    (ax,) = drawn[0].axes
    arrows = [
        (rounded(p._posA_posB[0]), rounded(p._posA_posB[1]), p.get_linestyle(), p.get_connectionstyle().rad)
        for p in ax.patches
        if isinstance(p, FancyArrowPatch)
    ]
    assert arrows == [
        ((5.4, 0.0), (1.5, -0.55), "-", 0.0),  # ingest -> train: dataset
        ((1.5, 0.0), (1.5, -0.55), ":", 0.0),  # check -> train: order only
        ((1.5, -1.45), (1.5, -2.0), "-", 0.0),  # train -> deploy: model, through the condition
        ((1.5, -2.9), (1.5, -3.45), ":", 0.0),  # deploy -> notify
        ((3.0, -1.0), (3.0, -3.9), ":", -0.38),  # train -> notify: two rows down in one column, on the right
        ((1.5, -1.45), (5.4, -2.0), ":", 0.0),  # train -> audit
    ]
    assert {(p.get_arrowstyle().__class__.__name__, p.get_mutation_scale(), to_hex(p.get_edgecolor())) for p in
            ax.patches if isinstance(p, FancyArrowPatch)} == {("CurveFilledB", 10, "#444444")}  # fmt: skip
    assert {p.get_linewidth() for p in ax.patches if isinstance(p, FancyArrowPatch)} == {0.9}


def test_a_long_edge_bends_at_most_so_far(tmp_path):
    """Nine rows between parent and child in one column: the bend (0.22 + 0.08 a row) is capped at 0.9."""
    after = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(10)}
    after["t9"].append("t0")
    spec = {
        "pipelineInfo": {"name": "long"},
        "root": {"dag": {"tasks": {n: {"componentRef": {"name": n}, "dependentTasks": a} for n, a in after.items()}}},
        "components": {n: {"executorLabel": n} for n in after},
        "deploymentSpec": {"executors": {n: container("x") for n in after}},
    }
    figure, _ = draw(spec, tmp_path / "g.svg")
    (ax,) = figure.axes
    bends = sorted(p.get_connectionstyle().rad for p in ax.patches if isinstance(p, FancyArrowPatch))
    assert bends == [-0.9] + [0.0] * 9
    assert ax.get_title() == "long (compiled by kfp)"


def test_the_command_draws_the_yaml_it_is_given(tmp_path, capsys):
    source = tmp_path / "tiny.yaml"
    source.write_text(yaml.safe_dump(SPEC))
    assert main([str(source), "--output", str(tmp_path / "out.png")]) == 0
    assert capsys.readouterr().out == f"7 tasks of {source} drawn in {tmp_path / 'out.png'}\n"
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_names_itself_in_its_usage_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["tiny.yaml"])
    assert capsys.readouterr().err.startswith("usage: python -m lifecycle graph [-h] --output OUTPUT pipeline\n")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "`python -m lifecycle graph PIPELINE.yaml --output FILE.png`: the compiled pipeline's DAG as a picture" in (
        " ".join(capsys.readouterr().out.split())
    )


def test_a_box_lists_two_inputs_and_two_outputs_comma_separated(tmp_path):
    """One task reads two artifacts of another: its `in:` and the producer's `out:` each list both, sorted."""
    spec = {
        "pipelineInfo": {"name": "pair"},
        "root": {
            "dag": {
                "tasks": {
                    "make": {"componentRef": {"name": "comp-make"}},
                    "use": {
                        "componentRef": {"name": "comp-use"},
                        "inputs": {"artifacts": {"weights": out("make", "model"), "data": out("make", "dataset")}},
                    },
                }
            }
        },
        "components": {"comp-make": {"executorLabel": "exec-make"}, "comp-use": {"executorLabel": "exec-use"}},
        "deploymentSpec": {"executors": {"exec-make": container("make"), "exec-use": container("use")}},
    }
    figure, _ = draw(spec, tmp_path / "pair.png")
    (ax,) = figure.axes
    flows = [t.get_text() for t in ax.texts if t.get_text().startswith(("in:", "out:"))]
    assert flows == ["out: dataset, model", "in: data, weights"]


def test_a_group_without_a_condition_draws_its_tasks_without_a_box_and_a_bare_command_keeps_its_first_word(tmp_path):
    """A sub-DAG with no trigger policy (kfp's ExitHandler or ParallelFor) holds its tasks unlabelled; a task whose
    arguments follow `--` without `--env` is named by its first two words all the same."""
    spec = {
        "pipelineInfo": {"name": "grouped"},
        "root": {"dag": {"tasks": {"group": {"componentRef": {"name": "comp-group"}}}}},
        "components": {
            "comp-group": {"dag": {"tasks": {"inner": {"componentRef": {"name": "comp-inner"}}}}},
            "comp-inner": {"executorLabel": "exec-inner"},
        },
        "deploymentSpec": {
            "executors": {"exec-inner": container("-m", "trainer", "pipeline-step", "--", "ingest", "--source", "x")}
        },
    }
    assert flatten(spec) == {"inner": Node("inner", "ingest --source", "")}
    figure, _ = draw(spec, tmp_path / "g.png")
    (ax,) = figure.axes
    assert not [p for p in ax.patches if isinstance(p, Rectangle) and not isinstance(p, FancyBboxPatch)]
    assert [t.get_text() for t in ax.texts] == ["inner", "trainer ingest --source"]


def test_the_title_is_10_points_and_the_png_is_cropped_to_what_is_drawn_in_new_folders(tmp_path):
    import struct

    figure, path = draw(SPEC, tmp_path / "a" / "b" / "graph.png")
    (ax,) = figure.axes
    assert ax.title.get_fontsize() == 10
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk's size
    full = figure.get_size_inches() * figure.dpi  # 1452 x 704 uncropped: the tight box leaves out the margins
    assert width < full[0] - 100 and height < full[1], (width, height)
