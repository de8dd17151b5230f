"""The one-screen summary: each part's status and time, and the figures that matter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gpucheck.parts import Outcome

# what the summary shows of each benchmark's methods, if the run got that far
FIGURES = {
    "runtime": ("tokens_per_s", "ratio", "batch_size", "padding_fraction", "oom_events"),
    "rerank": ("pairs_per_s", "ratio", "batch_size", "failures", "oom_events"),
}


def write(
    out: Path, environment: dict[str, Any], outcomes: Sequence[Outcome], total_s: float
) -> str:
    """Write summary.md into ``out`` and return its text.

    One file: a device host sends back at most 8, and the check leaves exactly that many
    (environment.json, summary.md, two benchmark results and four logs).
    """
    text = render(environment, outcomes, total_s)
    (out / "summary.md").write_text(text, encoding="utf-8")
    return text


def render(environment: dict[str, Any], outcomes: Sequence[Outcome], total_s: float) -> str:
    versions = environment.get("versions", {})
    lines = [
        f"# embedq gpu-check on {environment.get('device_name', environment.get('device', '?'))}",
        "",
        f"torch {versions.get('torch')} (CUDA {environment.get('torch_cuda')}), "
        f"transformers {versions.get('transformers')}, "
        f"FlagEmbedding {versions.get('FlagEmbedding')}; {total_s:.0f} s in all",
        "",
        "| part | status | seconds | limit | files |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        files = ", ".join(name for name in (o.result, o.log) if name)
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.0f} | {o.limit_s:.0f} | {files} |")
    cut = [o.name for o in outcomes if o.status in {"cut", "skipped"}]
    if cut:
        lines += ["", f"Cut short or not run for lack of time: {', '.join(cut)} (see their logs)."]
    for o in outcomes:
        lines += figures(o)
    return "\n".join(lines) + "\n"


def figures(outcome: Outcome) -> list[str]:
    """The methods' figures and the targets, met or not, of a benchmark that finished."""
    keys = FIGURES.get(outcome.name)
    if not keys or not outcome.facts:
        return []
    lines = ["", f"## {outcome.name}", "", "| method | " + " | ".join(keys) + " |"]
    lines.append("|---" * (len(keys) + 1) + "|")
    for method, entry in outcome.facts.get("methods", {}).items():
        cells = [_cell(entry.get(key)) for key in keys] if "skipped" not in entry else ["skipped"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for name, target in outcome.facts.get("targets", {}).items():
        mark = "met" if target.get("met") else "MISSED"
        lines.append(
            f"- {name}: {_cell(target.get('value'))} (target {target.get('target')}): {mark}"
        )
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
