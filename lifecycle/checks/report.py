"""The run's summary table and its report: Markdown plus one self-contained HTML page (figures inlined).

Why self-contained: the page is written into the dev bucket and opened from there (or from a GCS console
download); it must not depend on files beside it.
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field

import storage


@dataclass
class RunSummary:
    """Every figure the summary table and the report show."""

    dataset_version: str = ""
    model_version: str = ""
    champion: str = ""
    gate: str = ""
    accuracy: float = 0.0
    macro_precision: float = 0.0
    macro_recall: float = 0.0
    macro_f1: float = 0.0
    http_accuracy_json: float = 0.0
    http_accuracy_binary: float = 0.0
    cold_start_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    binary_images_per_s: float = 0.0
    drift_on_test: bool = False
    drift_on_shifted: bool = False
    drifted_features: list = field(default_factory=list)
    infra_resources: dict = field(default_factory=dict)
    checkov: str = "not run"
    shadow_verdict: str = "not run"
    shadow_versions: str = ""
    shadow_agreement: str = ""
    shadow_latency: str = ""
    timings: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    wall_s: float = 0.0

    def record_shadow(self, figures) -> None:
        """The shadow step's figures (lifecycle.checks.shadow.ShadowFigures) as table cells."""

        def ms(value):
            return "-" if value is None else f"{value:.3f}"

        low, high = figures.interval
        self.shadow_versions = f"{figures.champion} vs {figures.challenger}, {figures.images:,} images"
        self.shadow_agreement = (
            "not measured"
            if figures.agreement is None
            else f"{figures.agreement:.2%} (95 % interval {low:.2%}-{high:.2%})"
        )
        self.shadow_latency = (
            f"champion {ms(figures.champion_p50_ms)} / {ms(figures.champion_p99_ms)} ms, "
            f"candidate {ms(figures.challenger_p50_ms)} / {ms(figures.challenger_p99_ms)} ms"
        )
        self.shadow_verdict = f"{figures.decision}: {'; '.join(figures.reasons)}"[:200]

    def rows(self) -> list[tuple[str, str]]:
        resources = ", ".join(f"{env} {n}" for env, n in sorted(self.infra_resources.items())) or "not synthesized"
        return [
            ("dataset version", self.dataset_version),
            ("model version (this run)", self.model_version),
            *self.shadow_rows(),
            ("promotion", self.gate),
            ("champion served", self.champion),
            ("test accuracy (evaluation)", f"{self.accuracy:.4f}"),
            (
                "macro precision / recall / F1",
                f"{self.macro_precision:.4f} / {self.macro_recall:.4f} / {self.macro_f1:.4f}",
            ),
            ("HTTP accuracy, JSON / binary", f"{self.http_accuracy_json:.4f} / {self.http_accuracy_binary:.4f}"),
            ("service cold start", f"{self.cold_start_s:.2f} s"),
            ("latency, 1 image, p50 / p99", f"{self.latency_p50_ms:.2f} / {self.latency_p99_ms:.2f} ms"),
            ("throughput, binary, 64/request", f"{self.binary_images_per_s:,.0f} images/s"),
            (
                "drift: test set / inverted images",
                f"{'yes' if self.drift_on_test else 'no'} / "
                f"{'yes' if self.drift_on_shifted else 'no'}"
                + (f" ({', '.join(self.drifted_features)})" if self.drifted_features else ""),
            ),
            ("infra resources (synth)", resources),
            ("checkov", self.checkov),
            ("wall time / peak step memory", f"{self.wall_s:.0f} s / {self.peak_rss_mb:,.0f} MB"),
        ]

    def shadow_rows(self) -> list[tuple[str, str]]:
        if not self.shadow_versions:
            return [("shadow before the gate", self.shadow_verdict)]
        return [
            ("shadow: champion vs candidate", self.shadow_versions),
            ("shadow: agreement (same class)", self.shadow_agreement),
            ("shadow: inference p50 / p99", self.shadow_latency),
            ("shadow: rollout verdict", self.shadow_verdict),
        ]

    def table(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        line = "+" + "-" * (width + 2) + "+" + "-" * 52 + "+"
        out = [line] + [f"| {k:<{width}} | {v:<50} |" for k, v in rows] + [line]
        return "\n".join(out)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _read_optional(uri: str) -> bytes | None:
    try:
        return storage.read_bytes(uri)
    except storage.StorageError:
        return None


def collect_figures(settings, summary: RunSummary, model_dir: str) -> list[tuple[str, bytes]]:
    """(title, PNG) of the analysis figures and the champion's confusion matrix, in reading order."""
    figures = []
    analysis = storage.join(settings.dev_bucket, "analysis", summary.dataset_version, "figures")
    for uri in storage.list_uris(analysis):
        if uri.endswith(".png"):
            figures.append((uri.rsplit("/", 1)[-1][:-4].replace("_", " "), storage.read_bytes(uri)))
    matrix = _read_optional(storage.join(model_dir, "confusion_matrix.png"))
    if matrix:
        figures.append(("confusion matrix (champion, test set)", matrix))
    return figures


def per_class_rows(model_dir: str) -> list[dict]:
    data = _read_optional(storage.join(model_dir, "evaluation.json"))
    return json.loads(data)["per_class"] if data else []


def markdown(summary: RunSummary, per_class: list[dict]) -> str:
    lines = [
        "# Fashion-MNIST lifecycle run",
        "",
        f"Run at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary.rows()]
    if per_class:
        lines += [
            "",
            "## Per class (champion, test set)",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['name']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
            for c in per_class
        ]
    lines += ["", "## Step timings", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in summary.timings.items()]
    return "\n".join(lines) + "\n"


def html_page(summary: RunSummary, per_class: list[dict], figures: list[tuple[str, bytes]]) -> str:
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary.rows())
    classes = "".join(
        f"<tr><td>{esc(c['name'])}</td><td>{c['precision']:.4f}</td><td>{c['recall']:.4f}</td>"
        f"<td>{c['f1']:.4f}</td><td>{c['support']}</td></tr>"
        for c in per_class
    )
    timings = "".join(f"<tr><td>{esc(n)}</td><td>{s:.1f}</td></tr>" for n, s in summary.timings.items())
    figs = "".join(
        f"<figure>{_img(png, title)}<figcaption>{esc(title)}</figcaption></figure>" for title, png in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fashion-MNIST lifecycle run</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
th {{ background: #f4f4f4; }} figure {{ display: inline-block; margin: .5rem; vertical-align: top; }}
figure img {{ max-width: 520px; border: 1px solid #ddd; }} figcaption {{ text-align: center; color: #555; }}
</style></head><body>
<h1>Fashion-MNIST lifecycle run</h1>
<p>Dataset <code>{esc(summary.dataset_version)}</code>, champion <code>{esc(summary.champion)}</code>,
run at {esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))}.</p>
<h2>Summary</h2><table id="summary">{rows}</table>
<h2>Per class (champion, test set)</h2>
<table id="per-class"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{classes}</table>
<h2>Figures</h2>{figs}
<h2>Step timings</h2><table id="timings"><tr><th>step</th><th>seconds</th></tr>{timings}</table>
</body></html>
"""


def write_report(settings, summary: RunSummary, model_dir: str) -> tuple[str, str]:
    """Markdown and HTML into <dev bucket>/reports/<UTC time>/ and reports/latest.*; returns the HTML URIs."""
    per_class = per_class_rows(model_dir)
    figures = collect_figures(settings, summary, model_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    md, page = markdown(summary, per_class), html_page(summary, per_class, figures)
    for folder in (stamp, "latest"):
        base = storage.join(settings.dev_bucket, "reports", folder)
        storage.write_text(storage.join(base, "report.md"), md, content_type="text/markdown; charset=utf-8")
        storage.write_text(storage.join(base, "report.html"), page, content_type="text/html; charset=utf-8")
    return (
        storage.join(settings.dev_bucket, "reports", stamp, "report.html"),
        storage.join(settings.dev_bucket, "reports", "latest", "report.html"),
    )
