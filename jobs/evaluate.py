"""`batchml evaluate`: a registered model's metrics over a whole Delta table version, with
bootstrap intervals, slices and a report (HTML + PNG) written beside the model version.

The default table is the model's own training table at its pinned version, test split
(the same hash split training used). Any table or version with the model's columns and
the label can be evaluated: `--table flight_features@7 --split all`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, ModelRefArg, emit, reports_errors, run_context
from batchml.lib.evaluation.model import evaluate
from batchml.lib.platform.logs import get_logger

log = get_logger(__name__)


HEADLINE = {
    "binary": ("areaUnderROC", "areaUnderPR", "log_loss", "brier", "accuracy", "f1"),
    "multiclass": ("accuracy", "macro_f1", "weighted_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}


def render(data: dict[str, Any]) -> str:
    m = data["metrics"]
    intervals = (m.get("bootstrap") or {}).get("intervals", {})
    lines = [
        f"evaluate {data['model']}@{data['model_version']} on "
        f"{data['table']}@{data['table_version']} ({data['split']} split, {m['rows']:,} rows, "
        f"scorer {data['scorer']}, {data['seconds']} s)"
    ]
    for name in HEADLINE[data["task"]]:
        if name not in m or m[name] is None:
            continue
        ci = intervals.get(name)
        bound = m.get(f"{name}_error_bound")
        lines.append(
            f"  {name:<14}{m[name]:.6f}"
            + (f"  95% CI [{ci[0]:.6f}, {ci[1]:.6f}]" if ci else "")
            + (f"  (binning error <= {bound:.1e})" if bound is not None else "")
        )
    for t in m.get("thresholds", []):
        c = t["confusion"]
        lines.append(
            f"  at {t['threshold']:<11g} precision {t['precision']:.4f}, recall {t['recall']:.4f}, "
            f"f1 {t['f1']:.4f}; tp {c['tp']}, fp {c['fp']}, fn {c['fn']}, tn {c['tn']}"
        )
    if "best_f1" in m:
        lines.append(f"  best F1 {m['best_f1']:.4f} at threshold {m['best_f1_threshold']:.4f}")
    for column, table in (m.get("slices") or {}).items():
        key = HEADLINE[data["task"]][0]
        shown = ", ".join(
            f"{e['value']} {e.get(key) if e.get(key) is None else round(e[key], 4)} ({e['rows']:,})"
            for e in table[:8]
        )
        more = f", … {len(table) - 8} more" if len(table) > 8 else ""
        lines.append(f"  by {column}: {shown}{more}")
    if data.get("report"):
        lines.append(f"  report: {data['report']}")
    return "\n".join(lines)


@reports_errors
def command(
    ctx: typer.Context,
    model: ModelRefArg,
    *,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            metavar="TABLE[@VERSION]",
            help="The table to evaluate on (default: the model's training table and version).",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="test, validation, train or all (the whole table).")
    ] = "test",
    threshold: Annotated[
        list[float] | None,
        typer.Option("--threshold", help="Also report the figures at this threshold (repeat)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Metrics of a registered model over a whole table version, with intervals and a report."""
    state = run_context(ctx)
    report = evaluate(
        state.spark(),
        state.config().settings,
        model,
        table=table,
        split=split,
        thresholds=tuple(threshold or ()),
    )
    data = report.to_dict()
    if not as_json:
        emit(data, False, render)
        return
    for key in ("roc_curve", "pr_curve", "score_histogram", "residual_histogram"):
        data["metrics"].pop(key, None)
    emit(data, True, render)
