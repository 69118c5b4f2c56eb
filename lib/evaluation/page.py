"""An evaluation as a page a person can look at: PNG plots (matplotlib, headless Agg) and
one self-contained HTML file with the plots embedded, the metrics with their intervals,
the thresholds and the slices. Everything is drawn from the evaluation's aggregated
tables: no rows are read here."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchml.lib.platform import storage

TOP_FEATURES = 25
HEADLINE = (
    "areaUnderROC",
    "areaUnderPR",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "best_f1",
    "best_f1_threshold",
    "macro_f1",
    "weighted_f1",
    "macro_precision",
    "macro_recall",
    "rmse",
    "mae",
    "r2",
    "mape",
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display needed
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Image:
    """One rendered plot: its caption, file name and PNG bytes."""

    caption: str
    name: str
    png: bytes


def render_png(plt: Any, figure: Any) -> bytes:
    """The figure as PNG bytes (closed after)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def write_files(directory: str, files: dict[str, bytes]) -> None:
    """Write a page's files into `directory` (a local folder or an object-store prefix);
    the page last, so a page never names a plot that is not there yet."""
    for name, data in sorted(files.items(), key=lambda item: item[0] == "report.html"):
        storage.write_bytes(storage.join(directory, name), data)


def write_report(
    directory: str | Path,
    title: str,
    figures: dict[str, Any],
    weights: list[tuple[str, float]] | None,
) -> str:
    """Write `report.html`, the PNG plots and `metrics.json` into `directory` (rendered
    in memory first, then written: a folder or an object-store prefix alike); returns the
    HTML's location."""
    directory = str(directory)
    plt = _pyplot()
    images = [
        Image(caption, f"{name}.png", render_png(plt, figure))
        for name, (caption, figure) in _plots(figures, weights).items()
    ]
    files = {image.name: image.png for image in images}
    files["metrics.json"] = json.dumps(figures, indent=2, default=plain_json).encode()
    files["report.html"] = _page(title, figures, weights, images).encode()
    write_files(directory, files)
    return storage.join(directory, "report.html")


def plain_json(value: Any) -> Any:
    """`json.dumps`'s `default` for figures: NumPy numbers as Python's."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)


def _plots(figures: dict[str, Any], weights: list[tuple[str, float]] | None) -> dict[str, Any]:
    plt = _pyplot()
    out: dict[str, Any] = {}
    task = figures.get("task")
    if task == "binary" and "roc_curve" in figures:
        fig, ax = plt.subplots(figsize=(5, 5))
        roc = figures["roc_curve"]
        ax.plot(roc["fpr"], roc["tpr"], label=f"AUC {figures['areaUnderROC']:.4f}")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
        ax.legend(loc="lower right")
        out["roc"] = ("ROC curve", fig)
        fig, ax = plt.subplots(figsize=(5, 5))
        pr = figures["pr_curve"]
        ax.plot(pr["recall"], pr["precision"], label=f"AUC {figures['areaUnderPR']:.4f}")
        ax.axhline(figures["positives"] / figures["rows"], linestyle="--", color="grey")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", ylim=(0, 1.02))
        ax.legend(loc="upper right")
        out["pr"] = ("Precision-recall curve", fig)
    if task == "binary":
        fig, ax = plt.subplots(figsize=(5, 5))
        cal = figures["calibration"]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.plot([c["mean_predicted"] for c in cal], [c["observed_rate"] for c in cal], marker="o")
        ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration")
        out["calibration"] = ("Calibration (ten probability deciles)", fig)
        c = figures["confusion"]
        out["confusion"] = (
            f"Confusion matrix at threshold {figures['threshold']:g}",
            _matrix_plot(plt, [[c["tn"], c["fp"]], [c["fn"], c["tp"]]], ["0", "1"]),
        )
        fig, ax = plt.subplots(figsize=(6, 4))
        hist = figures["score_histogram"]
        edges = np.asarray(hist["edges"])
        middle, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        for name, key in (("label 0", "negative"), ("label 1", "positive")):
            counts = np.asarray(hist[key], dtype=float)
            total = counts.sum() or 1.0
            ax.bar(middle, counts / total, width=width, alpha=0.55, label=name)
        ax.set(xlabel="predicted probability of class 1", ylabel="share of the class")
        ax.set_title("Score distribution per class")
        ax.legend()
        out["scores"] = ("Score distribution per class", fig)
    if task == "multiclass":
        matrix = figures["confusion_matrix"]
        out["confusion"] = (
            "Confusion matrix",
            _matrix_plot(plt, matrix, [str(i) for i in range(len(matrix))]),
        )
    if task == "regression":
        fig, ax = plt.subplots(figsize=(6, 4))
        hist = figures["residual_histogram"]
        means = np.asarray(hist["mean"], dtype=float)
        rows = np.asarray(hist["rows"], dtype=float)
        low, high = np.nanpercentile(means, [0.5, 99.5]) if means.size else (0, 1)
        ax.hist(means, bins=60, weights=rows, range=(low, high))
        ax.set(xlabel="residual (prediction - label)", ylabel="rows", title="Residuals")
        out["residuals"] = ("Residual distribution", fig)
        fig, ax = plt.subplots(figsize=(6, 4))
        quantiles = figures["residual_quantiles"]
        ax.plot([float(k) for k in quantiles], list(quantiles.values()), marker="o")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="quantile", ylabel="residual", title="Residual quantiles")
        out["residual_quantiles"] = ("Residual quantiles", fig)
    if weights:
        shown = sorted(weights, key=lambda w: -abs(w[1]))[:TOP_FEATURES][::-1]
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(shown) + 1.2))
        ax.barh([n for n, _ in shown], [v for _, v in shown])
        ax.set_title("Feature weights (largest in magnitude)")
        ax.tick_params(axis="y", labelsize=8)
        out["features"] = ("Feature importances / coefficients", fig)
    return out


def _matrix_plot(plt: Any, matrix: list[list[float]], labels: list[str]) -> Any:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    values = np.asarray(matrix, dtype=float)
    ax.imshow(values, cmap="Blues")
    for (i, j), v in np.ndenumerate(values):
        dark = v > values.max() / 2
        ax.text(
            j,
            i,
            f"{int(v):,}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if dark else "black",
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="label")
    return fig


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.6g}"
    return html.escape(str(value))


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(
    title: str,
    figures: dict[str, Any],
    weights: list[tuple[str, float]] | None,
    images: list[Image],
) -> str:
    intervals = (figures.get("bootstrap") or {}).get("intervals", {})
    rows = []
    for name in HEADLINE:
        if name not in figures:
            continue
        ci = intervals.get(name)
        bound = figures.get(f"{name}_error_bound")
        rows.append(
            [
                name,
                figures[name],
                f"[{ci[0]:.6g}, {ci[1]:.6g}]" if ci else "",
                f"{bound:.2g}" if bound is not None else "",
            ]
        )
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{figures.get('rows', 0):,} rows evaluated"
        + (f", {figures['positives']:,} positive" if "positives" in figures else "")
        + "</p>",
        "<h2>Metrics</h2>",
        html_table(["metric", "value", "95% bootstrap interval", "binning error bound"], rows),
    ]
    if figures.get("thresholds"):
        parts.append("<h2>At thresholds</h2>")
        parts.append(
            html_table(
                ["threshold", "accuracy", "precision", "recall", "f1", "tp", "fp", "fn", "tn"],
                [
                    [
                        t["threshold"],
                        t["accuracy"],
                        t["precision"],
                        t["recall"],
                        t["f1"],
                        *t["confusion"].values(),
                    ]
                    for t in figures["thresholds"]
                ],
            )
        )
    if figures.get("per_class"):
        parts.append("<h2>Per class</h2>")
        parts.append(
            html_table(
                ["class", "rows", "precision", "recall", "f1"],
                [
                    [c["class"], c["rows"], c["precision"], c["recall"], c["f1"]]
                    for c in figures["per_class"]
                ],
            )
        )
    parts.extend(figure_html(image) for image in images)
    for column, table in (figures.get("slices") or {}).items():
        if not table:
            continue
        header = list(table[0])
        parts.append(f"<h2>Slices by {html.escape(column)}</h2>")
        parts.append(html_table(header, [[e.get(h) for h in header] for e in table]))
    if figures.get("calibration"):
        parts.append("<h2>Calibration</h2>")
        parts.append(
            html_table(
                ["from", "to", "rows", "mean predicted", "observed rate"],
                [list(c.values()) for c in figures["calibration"]],
            )
        )
    if weights:
        parts.append("<h2>Feature weights</h2>")
        top = sorted(weights, key=lambda w: -abs(w[1]))[:TOP_FEATURES]
        parts.append(html_table(["feature", "weight"], [list(w) for w in top]))
    return html_page(title, parts)


def figure_html(image: Image) -> str:
    """A PNG embedded in the page (the page stays one self-contained file)."""
    data = base64.b64encode(image.png).decode("ascii")
    caption = html.escape(image.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
        f"<figcaption>{caption} ({html.escape(image.name)})</figcaption></figure>"
    )


def html_page(title: str, parts: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "figure{display:inline-block;margin:0.5em}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def readable(column: str) -> str:
    """A feature pipeline's derived column named after its source column."""
    if column.endswith("__num"):
        return column[: -len("__num")]
    if column.endswith("__is_missing"):
        return f"{column[: -len('__is_missing')]} is missing"
    if "__x__" in column:
        left, right = column.split("__x__", 1)
        return f"{left} x {right}"
    if column.endswith("__bucket"):
        return column[: -len("__bucket")]
    if column.endswith("__index"):  # a category code (native encoding)
        return column[: -len("__index")]
    if column.endswith("__hashed"):  # a hash bucket number (native encoding)
        return f"{column[: -len('__hashed')]} (hashed)"
    if "__hashed_" in column:
        name, bucket = column.split("__hashed_", 1)
        return f"{name} (hash bucket {bucket})"
    if "__onehot_" in column:
        name, level = column.split("__onehot_", 1)
        return f"{name} = {level}"
    return column


def slot_names(blocks: list[dict[str, Any]]) -> list[str]:
    """A readable name per slot of the assembled vector, from the feature layout: the
    column, a one-hot level (`origin = JFK`) or a bucketized column."""
    names: list[str] = []
    for block in blocks:
        if "numeric" in block:
            names.append(readable(block["numeric"]))
        elif "buckets" in block:
            inner = [f"{x:.4g}" for x in block["splits"][1:-1]]
            ranges = f"{inner[0]}..{inner[-1]}" if inner else "one range"
            names.append(f"{readable(block['buckets'])} (bucket index, ranges {ranges})")
        else:
            column = readable(block["categorical"])
            labels = block["labels"]
            names.extend(f"{column} = {label}" for label in labels)
            names.extend(f"{column} = (other)" for _ in range(int(block["slots"]) - len(labels)))
    return names


def scorer_weights(scorer: Any) -> list[tuple[str, float]]:
    """Coefficients of a linear scorer, named by feature, level or bucket."""
    out: list[tuple[str, float]] = []
    for term in scorer.terms:
        if "numeric" in term:
            out.append((readable(term["numeric"]), float(term["weight"])))
        elif "buckets" in term:
            inner = [f"{x:.4g}" for x in term["splits"][1:-1]]
            ranges = f"{inner[0]}..{inner[-1]}" if inner else "one range"
            count = len(term["splits"]) - 1
            label = f"{readable(term['buckets'])} (bucket index, {count} ranges {ranges})"
            out.append((label, float(term["weight"])))
        else:
            column = readable(term["categorical"])
            out.extend(
                (f"{column} = {label}", float(w))
                for label, w in zip(term["labels"], term["weights"], strict=True)
            )
            if term.get("other") is not None:
                out.append((f"{column} = (other)", float(term["other"])))
    return out


def pipeline_weights(fitted: Any, frame: Any = None) -> list[tuple[str, float]]:
    """Importances (trees: MLlib's, xgboost's gain) or coefficients (linear) of a fitted
    pipeline's final stage, mapped to slot names when the feature stages allow."""
    from batchml.lib.scoring.booster import feature_columns
    from batchml.lib.scoring.linear import NotLinear, feature_layout

    final = fitted.stages[-1]
    if hasattr(final, "get_booster"):
        column = final.getOrDefault(final.featuresCol)
        gains = final.get_booster().get_score(importance_type="gain")
        size = 1 + max((int(k[1:]) for k in gains if k[1:].isdigit()), default=-1)
        values = [float(gains.get(f"f{i}", 0.0)) for i in range(size)]
    elif hasattr(final, "featureImportances"):
        column = final.getFeaturesCol()
        values = final.featureImportances.toArray().tolist()
    elif hasattr(final, "coefficients") and getattr(final, "numClasses", 2) <= 2:
        column = final.getFeaturesCol()
        values = final.coefficients.toArray().tolist()
    else:
        return []
    native = feature_columns(final) if hasattr(final, "get_booster") else []
    try:
        if native:  # trained on columns: one feature per column, in their order
            names = [readable(c) for c in native]
        else:
            names = slot_names(feature_layout(fitted.stages[:-1], column)[1])
    except NotLinear:  # e.g. hashed columns: the assembler's slot names (no Spark job)
        names = []
        if frame is not None:
            from pyspark.ml import PipelineModel

            from batchml.lib.features.pipeline import slot_names as assembled_names

            features = PipelineModel(stages=fitted.stages[:-1]).transform(frame.limit(0))
            names = [readable(n) for n in assembled_names(features, column)]
    if len(names) < len(values):
        names = names + [f"slot {i}" for i in range(len(names), len(values))]
    return [(names[i], v) for i, v in enumerate(values) if v]
