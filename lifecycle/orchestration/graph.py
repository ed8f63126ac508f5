"""`python -m lifecycle graph PIPELINE.yaml --output FILE.png`: the compiled pipeline's DAG as a picture.

Why from the compiled spec: the picture in the README must show what Vertex AI runs, not what someone drew. Tasks are
laid out in rows by dependency depth; solid arrows carry artifacts (labelled with their names), dotted ones are
order-only dependencies; tasks inside a `dsl.If` sit in a dashed box labelled with the condition. matplotlib only,
so no Graphviz install is needed.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Node:
    name: str
    command: str
    condition: str | None = None
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # input key -> (producer task, output key)
    after: set[str] = field(default_factory=set)


def flatten(spec: dict) -> dict[str, Node]:
    """Container tasks of the root DAG and of its condition sub-DAGs, with artifact and order edges resolved."""
    nodes: dict[str, Node] = {}
    components = spec["components"]
    executors = spec["deploymentSpec"]["executors"]

    def walk(dag: dict, outer: dict[str, tuple[str, str]], condition: str | None, outer_after: set[str]) -> None:
        for name, task in dag["tasks"].items():
            inputs = {}
            for key, value in task.get("inputs", {}).get("artifacts", {}).items():
                if "taskOutputArtifact" in value:
                    ref = value["taskOutputArtifact"]
                    inputs[key] = (ref["producerTask"], ref["outputArtifactKey"])
                else:
                    inputs[key] = outer[value["componentInputArtifact"]]
            after = set(task.get("dependentTasks", [])) | outer_after
            component = components[task["componentRef"]["name"]]
            if "dag" in component:
                label = _condition_label(task.get("triggerPolicy", {}).get("condition", ""))
                walk(component["dag"], inputs, label, after)
                continue
            args = executors[component["executorLabel"]]["container"]["args"]
            trainer = args[args.index("--") + 1 :] if "--" in args else args
            words = [a for a in trainer if not a.startswith("--env") and a != "dev" and a != "local"]
            nodes[name] = Node(name, " ".join(words[:2]), condition, inputs, after)

    walk(spec["root"]["dag"], {}, None, set())
    for node in nodes.values():
        node.after = {a for a in node.after if a in nodes} - {p for p, _ in node.inputs.values()}
    return nodes


def _condition_label(condition: str) -> str:
    match = re.match(r"inputs\.parameter_values\['pipelinechannel--(.+?)-(\w+)'\] == '(.+)'", condition)
    return f"if {match.group(1)}.{match.group(2)} == '{match.group(3)}'" if match else condition


def levels(nodes: dict[str, Node]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in depth:
            node = nodes[name]
            parents = {p for p, _ in node.inputs.values()} | node.after
            depth[name] = 1 + max((of(p) for p in parents), default=-1)
        return depth[name]

    for name in nodes:
        of(name)
    return depth


def render(spec: dict, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    nodes = flatten(spec)
    depth = levels(nodes)
    rows: dict[int, list[str]] = {}
    for name in sorted(nodes, key=lambda n: (depth[n], nodes[n].condition is None, n)):  # conditional ones left
        rows.setdefault(depth[name], []).append(name)
    width = max(len(r) for r in rows.values())
    box_w, box_h, gap_x, gap_y = 3.0, 0.9, 0.9, 0.55
    pos = {}
    for level, names in rows.items():
        for i, name in enumerate(names):
            pos[name] = (i * (box_w + gap_x), -level * (box_h + gap_y))
    writes = {
        name: sorted({key for other in nodes.values() for p, key in other.inputs.values() if p == name})
        for name in nodes
    }
    fig_w = width * (box_w + gap_x) + 1.5
    fig_h = len(rows) * (box_h + gap_y) + 0.6
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    for label in {n.condition for n in nodes.values() if n.condition}:
        members = [pos[n] for n, node in nodes.items() if node.condition == label]
        x0, y0 = min(x for x, _ in members) - 0.2, min(y for _, y in members) - 0.2
        x1, y1 = max(x for x, _ in members) + box_w + 0.2, max(y for _, y in members) + box_h + 0.35
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linestyle="--", edgecolor="#b35900"))
        ax.text(x0 + 0.1, y1 - 0.2, label, fontsize=8, color="#b35900", style="italic")
    for name, node in nodes.items():
        x, y = pos[name]
        ax.add_patch(
            FancyBboxPatch(
                (x, y), box_w, box_h, boxstyle="round,pad=0.02", facecolor="#e8f0fe", edgecolor="#1a73e8", linewidth=1.2
            )
        )
        ax.text(x + box_w / 2, y + box_h * 0.76, name, ha="center", va="center", fontsize=9.5, weight="bold")
        ax.text(x + box_w / 2, y + box_h * 0.48, f"trainer {node.command}", ha="center", va="center", fontsize=7.5)
        flows = []
        if node.inputs:
            flows.append("in: " + ", ".join(sorted(node.inputs)))
        if writes[name]:
            flows.append("out: " + ", ".join(writes[name]))
        if flows:
            ax.text(
                x + box_w / 2, y + box_h * 0.2, "   ".join(flows), ha="center", va="center", fontsize=7, color="#0b5394"
            )
    for name, node in nodes.items():
        x, y = pos[name]
        edges = [(p, "-") for p in sorted({p for p, _ in node.inputs.values()})] + [
            (p, ":") for p in sorted(node.after)
        ]
        for parent, style in edges:
            px, py = pos[parent]
            span = depth[name] - depth[parent]
            if span > 1 and px == x:  # around the boxes in between, on the right
                start, end = (px + box_w, py + box_h / 2), (x + box_w, y + box_h / 2)
                bend = f"arc3,rad={-min(0.9, 0.22 + 0.08 * span)}"
            else:
                start, end = (px + box_w / 2, py), (x + box_w / 2, y + box_h)
                bend = "arc3,rad=0"
            ax.add_patch(
                FancyArrowPatch(
                    start,
                    end,
                    arrowstyle="-|>",
                    mutation_scale=10,
                    linestyle=style,
                    color="#444",
                    linewidth=0.9,
                    connectionstyle=bend,
                )
            )
    ax.set_xlim(-0.3, fig_w - 0.2)
    ax.set_ylim(-(len(rows) - 1) * (box_h + gap_y) - 0.3, box_h + 0.3)
    ax.axis("off")
    ax.set_title(f"{spec['pipelineInfo']['name']} (compiled by {spec.get('sdkVersion', 'kfp')})", fontsize=10)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, bbox_inches="tight")
    plt.close(fig)
    return output


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle graph", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="the YAML `python -m lifecycle compile` wrote")
    parser.add_argument("--output", type=Path, required=True, help="a .png or .svg file")
    args = parser.parse_args(argv)
    spec = yaml.safe_load(args.pipeline.read_text())
    print(f"{len(flatten(spec))} tasks of {args.pipeline} drawn in {render(spec, args.output)}")
    return 0
