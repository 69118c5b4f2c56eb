"""`batchml models list | show | alias`: the model registry.

Listing and showing read the registry's index with delta-rs (no Spark, no JVM): they
answer in about a second. Setting an alias writes through the Delta backend."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, emit, recorded, reports_errors, run_context

app = typer.Typer(help="Registered model versions and their aliases.", no_args_is_help=True)


def _render_list(data: dict[str, Any]) -> str:
    lines = [f"{'model':<20} {'version':>7}  {'algorithm':<22} {'trained on':<40} aliases"]
    for v in data["versions"]:
        table = f"{v['training_table'].rsplit('/', 1)[-1]}@{v['training_version']}"
        lines.append(
            f"{v['name']:<20} {v['version']:>7}  {v['algorithm']:<22} {table:<40} "
            f"{', '.join(v['aliases'])}"
        )
    return "\n".join(lines)


@app.command("list")
@reports_errors
def models_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    *,
    as_json: JsonOption = False,
) -> None:
    """Every registered version, oldest first."""
    versions = run_context(ctx).registry().list(name)
    emit({"versions": [v.to_dict() for v in versions]}, as_json, _render_list)


@app.command("show")
@reports_errors
def models_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    *,
    as_json: JsonOption = False,
) -> None:
    """One version: lineage, metrics, aliases and its manifest."""
    from batchml.lib.evaluation.model import reports_of

    registry = run_context(ctx).registry()
    version = registry.get(ref)
    data = version.to_dict()
    data["reports"] = reports_of(version)
    data["decisions"] = registry.decisions(version.name)
    emit(data, as_json, render_version)


def render_version(d: dict[str, Any]) -> str:
    """One registered version for a person: lineage, params, metrics, profile, code."""
    m = d["manifest"]
    rows = m.get("rows", {})
    lines = [
        f"{d['name']} version {d['version']} ({d['algorithm']}), registered "
        f"{d['created_at'][:19]}, aliases: {', '.join(d['aliases']) or 'none'}",
        f"  trained on      {d['training_table']} @ version {d['training_version']}",
    ]
    if rows:
        lines.append(
            "  rows            "
            + ", ".join(f"{k} {v:,}" for k, v in rows.items())
            + (f"; {m['training_seconds']} s" if "training_seconds" in m else "")
        )
    if m.get("params"):
        lines.append("  params          " + ", ".join(f"{k}={v}" for k, v in m["params"].items()))
    split = m.get("split")
    if split:
        shares = " / ".join(f"{k} {v:g}" for k, v in split["fractions"].items())
        lines.append(f"  split           {shares} by hash of {split['key']}, seed {split['seed']}")
    if m.get("early_stopping"):
        lines.append(
            "  early stopping  " + ", ".join(f"{k} {v}" for k, v in m["early_stopping"].items())
        )
    if m.get("tuning"):
        t = m["tuning"]
        lines.append(
            f"  tuning          {t['strategy']} {t['method']}: best {t['metric']} "
            f"{t['best_score']:.4f} of {len(t['candidates'])} with {t['best_params']}"
        )
    metrics = d["metrics"]
    if metrics and not all(isinstance(v, dict) for v in metrics.values()):
        metrics = {"all": metrics}  # registered by other code: one flat set of metrics
    for i, (part, scores) in enumerate(metrics.items()):
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()
        )
        lines.append(f"  {'metrics' if i == 0 else '':<16}{part}: {shown}")
    profile = m.get("training_profile")
    if profile:
        lines.append(
            f"  profile         {len(profile['numeric'])} numeric, "
            f"{len(profile['categorical'])} categorical features (--json for all)"
        )
    code = m.get("code", {})
    if code:
        commit = code.get("git_commit")
        lines.append(
            f"  code            batchml {code.get('package')}"
            + (
                f", git {commit[:12]}{' (dirty)' if code.get('git_dirty') else ''}"
                if commit
                else ""
            )
        )
    lines.append(f"  config hash     {d['config_hash']}")
    lines.append(f"  artifact        {d['artifact_uri']}")
    for i, report in enumerate(d.get("reports") or []):
        lines.append(f"  {'report' if i == 0 else '':<16}{report}")
    decisions = d.get("decisions") or []
    if decisions:
        lines.append(f"  alias history   of {d['name']} (oldest first):")
    for e in decisions:
        change = (
            f"champion {e['champion_before']} -> {e['champion_after']}"
            if e["champion_before"] != e["champion_after"]
            else f"champion stays {e['champion_after']}"
        )
        lines.append(
            f"    {str(e['decided_at'])[:19]}  {e['action']:<9} v{e['challenger']}: {change}; "
            f"{e['reason']}"
        )
    return "\n".join(lines)


@app.command("alias")
@recorded("models alias")
@reports_errors
def models_alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[int, typer.Argument(help="The version the alias points at.", min=1)],
    alias: Annotated[str, typer.Argument(help="The alias, e.g. champion or challenger.")],
    *,
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a version (atomically)."""
    run_context(ctx).registry(writable=True).set_alias(name, version, alias)
    emit(
        {"name": name, "version": version, "alias": alias},
        as_json,
        lambda d: f"{d['name']}@{d['alias']} -> version {d['version']}",
    )
