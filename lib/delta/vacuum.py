"""Vacuum under the embedded backend: delta-rs names the files no kept version needs;
the files a live writer staged or moved into place (and has not committed yet) are kept,
as are its stage's folders; dead writers' leftovers go.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from batchml.lib.delta import delta_log
from batchml.lib.delta.api import VacuumResult
from batchml.lib.delta.paths import relative_file
from batchml.lib.delta.staging import (
    CLAIM_SUFFIX,
    STAGING_DIR,
    remote_writer_claims,
    remove_if_empty,
    writer_claims,
)
from batchml.lib.platform import storage
from batchml.lib.platform.logs import get_logger

log = get_logger(__name__)


def vacuum_root(
    root: str, retain_hours: float, dry_run: bool, keep_versions: list[int] | None
) -> VacuumResult:
    """Remove unreferenced files older than `retain_hours` and stale staging folders of
    the table at `root` (a local path or an object-store URI)."""
    if storage.is_remote(root):
        return _vacuum_remote(root, retain_hours, dry_run, keep_versions)
    snapshot = delta_log.open_snapshot(root)  # read before the writers' claims
    live, stale = writer_claims(Path(root) / STAGING_DIR, retain_hours)
    protected = {relative for claim in live for relative in claim.files}
    candidates = _unreferenced(snapshot, retain_hours, keep_versions)
    files = sorted(f for f in candidates if relative_file(f) not in protected)
    if not dry_run:
        for relative in files:
            (Path(root) / relative_file(relative)).unlink(missing_ok=True)
        for folder in stale:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                Path(f"{folder}{CLAIM_SUFFIX}").unlink(missing_ok=True)
            else:  # a dead writer's claim
                folder.unlink(missing_ok=True)
        remove_if_empty(Path(root) / STAGING_DIR)
    if live:
        kept = {"table": root, "writers": len(live), "files": len(protected)}
        log.info("vacuum kept the files of running writers", extra=kept)
    folders = sorted(str(f) for f in stale if not f.name.endswith(CLAIM_SUFFIX))
    return VacuumResult(root, dry_run, files, folders)


def _vacuum_remote(
    root: str, retain_hours: float, dry_run: bool, keep_versions: list[int] | None
) -> VacuumResult:
    """`vacuum` on an object store: the same rules, objects removed one by one."""
    snapshot = delta_log.open_snapshot(root)
    live, stale = remote_writer_claims(root, retain_hours)
    # everything under a live writer's stage: it may not have listed its files yet
    stages = tuple(f"{claim.folder.name}/" for claim in live)
    protected = {relative for claim in live for relative in claim.files}
    candidates = _unreferenced(snapshot, retain_hours, keep_versions)
    files = sorted(
        f
        for f in candidates
        if relative_file(f) not in protected and not relative_file(f).startswith(stages)
    )
    if not dry_run:
        for relative in files:
            storage.delete(storage.join(root, relative_file(relative)))
        for leftover in stale:
            if leftover.endswith(CLAIM_SUFFIX):
                storage.delete(leftover)
            else:
                storage.delete_tree(leftover)
    folders = sorted(f for f in stale if not f.endswith(CLAIM_SUFFIX))
    return VacuumResult(root, dry_run, files, folders)


def _unreferenced(
    snapshot: delta_log.Snapshot, retain_hours: float, keep_versions: list[int] | None
) -> list[str]:
    """The files delta-rs would vacuum (listed, not removed). delta-rs counts whole hours,
    so its cut-off is `retain_hours` rounded up: never more removed than asked."""
    return snapshot.table.vacuum(
        retention_hours=math.ceil(retain_hours),
        dry_run=True,
        enforce_retention_duration=False,
        keep_versions=keep_versions or None,
    )
