"""A model's life over time as a page a person can look at: drift per feature per
monitoring run (a heatmap of PSI), the headline metric per period with its interval and
the test baseline, retrain and promotion events marked, rows scored and resources used
per run. Drawn from the monitoring table, the runs table and the registry (small tables
read by delta-rs): no data rows are read here."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from batchml.lib.evaluation.page import (
    Image,
    _pyplot,
    figure_html,
    html_page,
    html_table,
    render_png,
    write_files,
)
from batchml.lib.platform import storage

RUN_ROW, PERFORMANCE = "__run__", "__performance__"


@dataclass
class History:
    """What the page shows, gathered from the tables."""

    model: str
    monitoring: list[dict[str, Any]]  # the model's monitoring rows
    runs: list[dict[str, Any]]  # the runs that touched the model, oldest first
    versions: list[dict[str, Any]]  # registered versions: version, created_at, metrics
    champion: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def events_of(history: History) -> list[dict[str, Any]]:
    """Retrain and promotion events, oldest first: a version registered, a version made
    champion (from the runs' own records of the models they touched)."""
    out = []
    for run in history.runs:
        for touched in json.loads(run.get("models") or "[]"):
            if touched.get("name") != history.model:
                continue
            out.append(
                {
                    "at": run["started_at"],
                    "run_id": run["run_id"],
                    "job": run["job"],
                    "version": touched.get("version"),
                    "action": touched.get("action"),
                }
            )
    return out


def monitoring_runs(history: History) -> list[dict[str, Any]]:
    """One entry per monitoring run, oldest first: its input version, time, status,
    model version and PSI per feature."""
    runs: dict[tuple, dict[str, Any]] = {}
    for row in history.monitoring:
        # a run id may monitor several input versions (a demo's year under one run)
        key = (row["run_id"], row["input_version"], row["model_version"])
        entry = runs.setdefault(key, {"psi": {}, "run_id": row["run_id"]})
        if row["feature"] == RUN_ROW:
            entry.update(
                at=row["monitored_at"],
                input_version=row["input_version"],
                model_version=row["model_version"],
                status=row["status"],
                rows=int(row["value"]),
            )
        elif row["metric"] == "psi" and row["kind"] != "performance":
            entry["psi"][row["feature"]] = row["value"]
    return sorted((r for r in runs.values() if "at" in r), key=lambda r: r["at"])


def performance_rows(history: History) -> list[dict[str, Any]]:
    """The judged periods: period, model version, metric, value, interval, status."""
    judged: dict[tuple, dict[str, Any]] = {}
    # oldest first: a period judged again (labels landed or were corrected) shows its
    # latest figures
    for row in sorted(history.monitoring, key=lambda r: r["monitored_at"]):
        if row["feature"] != PERFORMANCE:
            continue
        key = (row["model_version"], row["period"])
        entry = judged.setdefault(key, {"model_version": key[0], "period": key[1]})
        metric = row["metric"]
        if metric in ("rows", "positives", "labels_resolved"):
            entry[metric] = int(row["value"])
        elif metric.endswith("_lower"):
            entry["lower"] = row["value"]
        elif metric.endswith("_upper"):
            entry["upper"] = row["value"]
        else:
            entry.update(metric=metric, value=row["value"], status=row["status"])
    return sorted((e for e in judged.values() if "value" in e), key=lambda e: e["period"])


def write(directory: str | Path, history: History) -> str:
    """Write `report.html` (plots embedded, also kept as PNGs) into `directory` (a folder
    or an object-store prefix); returns the page's location."""
    directory = str(directory)
    history.events = events_of(history)
    plt = _pyplot()
    images = [
        Image(caption, f"{name}.png", render_png(plt, figure))
        for name, (caption, figure) in _plots(plt, history).items()
    ]
    parts = [
        f"<h1>{html.escape(history.model)} over time</h1>",
        f"<p>champion: version {history.champion if history.champion is not None else '-'}; "
        f"{len(history.versions)} versions registered; {len(monitoring_runs(history))} "
        f"monitoring runs; {len(history.runs)} recorded runs</p>",
    ]
    parts.extend(figure_html(image) for image in images)
    periods = performance_rows(history)
    if periods:
        parts.append("<h2>Performance per period</h2>")
        parts.append(
            html_table(
                ["period", "model version", "metric", "value", "95% interval", "rows", "status"],
                [
                    [
                        p["period"],
                        p["model_version"],
                        p["metric"],
                        p["value"],
                        _interval(p),
                        p.get("rows"),
                        p.get("status"),
                    ]
                    for p in periods
                ],
            )
        )
    if history.events:
        parts.append("<h2>Retrain and promotion events</h2>")
        parts.append(
            html_table(
                ["time", "job", "run", "version", "action"],
                [
                    [str(e["at"]), e["job"], e["run_id"], e["version"], e["action"]]
                    for e in history.events
                ],
            )
        )
    parts.append("<h2>Runs</h2>")
    parts.append(
        html_table(
            ["started", "job", "status", "seconds", "task seconds", "peak heap MiB"],
            [
                [
                    str(r["started_at"]),
                    r["job"],
                    r["status"],
                    round(r["duration_s"] or 0, 1),
                    _seconds(r.get("task_time_ms")),
                    _mib(r.get("driver_peak_heap_bytes")),
                ]
                for r in history.runs
            ],
        )
    )
    files = {image.name: image.png for image in images}
    files["report.html"] = html_page(f"{history.model} over time", parts).encode()
    write_files(directory, files)
    return storage.join(directory, "report.html")


def _interval(entry: dict[str, Any]) -> str:
    if entry.get("lower") is None or entry.get("upper") is None:
        return ""
    return f"[{entry['lower']:.4f}, {entry['upper']:.4f}]"


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _plots(plt: Any, history: History) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    monitored = monitoring_runs(history)
    features = sorted({f for r in monitored for f in r["psi"]})
    if monitored and features:
        grid = np.array(
            [[r["psi"].get(f, np.nan) for r in monitored] for f in features], dtype=float
        )
        figure, axes = plt.subplots(
            figsize=(max(6, 0.5 * len(monitored) + 3), max(3, 0.3 * len(features) + 1.5))
        )
        image = axes.imshow(np.minimum(grid, 1.0), aspect="auto", cmap="magma_r", vmin=0, vmax=1)
        axes.set_yticks(range(len(features)), features)
        labels = [f"@{r['input_version']} (v{r['model_version']})" for r in monitored]
        axes.set_xticks(range(len(monitored)), labels, rotation=90)
        axes.set_xlabel("monitoring run: input table @version (model version)")
        figure.colorbar(image, ax=axes, label="PSI (capped at 1)")
        axes.set_title("Drift per feature over time")
        out["drift_heatmap"] = ("PSI by feature and monitoring run", figure)
    periods = performance_rows(history)
    if periods:
        figure, axes = plt.subplots(figsize=(8, 4))
        xs = np.arange(len(periods))
        values = np.array([p["value"] for p in periods], dtype=float)
        low = np.array([p.get("lower", p["value"]) for p in periods], dtype=float)
        high = np.array([p.get("upper", p["value"]) for p in periods], dtype=float)
        axes.errorbar(xs, values, yerr=[values - low, high - values], fmt="o-", capsize=3)
        previous = None
        for x, p in zip(xs, periods, strict=True):
            if previous is not None and p["model_version"] != previous:
                axes.axvline(x - 0.5, color="tab:red", linestyle="--")
                axes.annotate(f"v{p['model_version']}", (x - 0.45, values.min()), color="tab:red")
            previous = p["model_version"]
        baselines = {v["version"]: v["baseline"] for v in history.versions if v.get("baseline")}
        for version, value in baselines.items():
            if any(p["model_version"] == version for p in periods):
                axes.axhline(value, color="grey", linestyle=":", linewidth=1)
        axes.set_xticks(xs, [p["period"] for p in periods], rotation=90)
        axes.set_ylabel(periods[0]["metric"])
        axes.set_title("Headline metric per period (95% interval; dashed: a new version)")
        out["performance"] = ("The headline metric over time, retrains marked", figure)
    scored = [(r, _rows_scored(r)) for r in history.runs]
    scored = [(r, n) for r, n in scored if n]
    if scored:
        figure, axes = plt.subplots(figsize=(8, 3))
        axes.bar(range(len(scored)), [n for _, n in scored], color="tab:green")
        axes.set_xticks(
            range(len(scored)), [str(r["started_at"])[:16] for r, _ in scored], rotation=90
        )
        axes.set_ylabel("rows scored")
        axes.set_title("Rows scored per run")
        out["rows_scored"] = ("Rows scored per run", figure)
    if history.runs:
        figure, axes = plt.subplots(figsize=(8, 3))
        xs = np.arange(len(history.runs))
        wall = [r["duration_s"] or 0 for r in history.runs]
        tasks = [(r.get("task_time_ms") or 0) / 1000 for r in history.runs]
        axes.bar(xs - 0.2, wall, width=0.4, label="wall seconds")
        axes.bar(xs + 0.2, tasks, width=0.4, label="task seconds")
        axes.set_xticks(
            xs, [f"{r['job']} {str(r['started_at'])[5:16]}" for r in history.runs], rotation=90
        )
        axes.legend()
        axes.set_title("Resources per run")
        out["resources"] = ("Wall time and Spark task time per run", figure)
    return out


def _rows_scored(run: dict[str, Any]) -> int:
    """Rows a run scored: predict's writes are not counted by rows in the runs table, so
    they come from the pipeline's summary (predict step) when there is one."""
    summary = json.loads(run.get("summary") or "null") or {}
    for step in summary.get("steps", []):
        if step.get("step") == "predict":
            return int((step.get("details") or {}).get("rows_scored") or 0)
    return 0
