"""What `spark-submit.sh` ships: the batchml wheel, a packed Python environment, an entry file.

The environment is a virtualenv with every locked runtime dependency and the wheel,
packed by venv-pack (Spark's "Python Package Management" guide) into
`dist/batchml-env.tar.gz`; spark-submit ships it with `--archives …#environment` and the
executors run `./environment/bin/python`. Why venv-pack: it packs the exact versions
`uv.lock` pins, quickly, with no conda; its price is that `bin/python` links to the
interpreter that built it, so every node needs the same Python at the same path (a
cluster image built from the same base; nothing here points the environment at another
interpreter). conda-pack ships the interpreter too (no such constraint, but a conda
environment rebuilt outside the lock); a PEX file needs no unpacking but rebuilds its
cache on every executor. PySpark's jars (executors run the cluster's Spark) and the
libraries' test suites are left out: 880 MB of the 1.4 GB environment. Every application
unpacks the archive (the driver too, in client mode): its size is start-up time.

A build is reused while its fingerprint (a hash of `uv.lock`, `pyproject.toml`, the
sources and the Python version) is unchanged; a new build is made beside the old one
and moved in place, so a failed build leaves the last good one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from batchml.lib.platform.errors import EnvironmentProblem
from batchml.lib.platform.logs import get_logger

log = get_logger(__name__)

ARCHIVE = "batchml-env.tar.gz"
ENTRY = "batchml_driver.py"
FINGERPRINT = "fingerprint.json"
SOURCE_FOLDERS = ("lib", "jobs", "conf")
SOURCE_SUFFIXES = (".py", ".toml", ".properties")
ENTRY_TEXT = '''"""spark-submit's entry for batchml jobs: the `batchml` command, on the driver."""

from batchml.jobs.cli import submitted_main

submitted_main()
'''


@dataclass(frozen=True)
class Build:
    """A built dist/: what spark-submit is given."""

    folder: Path
    archive: Path
    wheel: Path
    entry: Path
    fingerprint: str
    reused: bool
    seconds: float


def project_root() -> Path:
    """The source checkout batchml runs from (where `uv.lock` is).

    Raises:
        EnvironmentProblem: batchml is installed from a wheel, not run from its checkout.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "uv.lock").is_file() or not (root / "pyproject.toml").is_file():
        raise EnvironmentProblem(
            f"batchml submit builds from the project checkout (uv.lock, pyproject.toml); "
            f"none at {root}: run ./spark-submit.sh from a clone of the repository"
        )
    return root


def fingerprint(root: Path) -> str:
    """A hash of everything the build depends on."""
    digest = hashlib.sha256()
    digest.update(f"python {sys.version_info[:3]} {sys.platform}".encode())
    files = [root / "uv.lock", root / "pyproject.toml"]
    for folder in SOURCE_FOLDERS:
        files.extend(
            path
            for path in (root / folder).rglob("*")
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts
        )
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(root: Path | None = None, *, dist: Path | None = None, force: bool = False) -> Build:
    """Build dist/ (or reuse it when nothing changed).

    Raises:
        EnvironmentProblem: uv missing, or a build step failed (its own last error line).
    """
    started = time.monotonic()
    root = root or project_root()
    dist = dist or root / "dist"
    wanted = fingerprint(root)
    found = None if force else _up_to_date(dist, wanted, started)
    if found is not None:
        return found
    dist.mkdir(parents=True, exist_ok=True)
    # two submits from one checkout at once (a scheduler's parallel tasks): one builds,
    # the other waits for it and takes its build
    with (dist / ".build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another build of {dist} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        found = None if force else _up_to_date(dist, wanted, started)
        if found is not None:
            return found
        for left in dist.glob(".build-*"):  # a build killed before its cleanup
            shutil.rmtree(left, ignore_errors=True)
        return _build(root, dist, wanted, started)


def _up_to_date(dist: Path, wanted: str, started: float) -> Build | None:
    current = _read_fingerprint(dist)
    if current is None or current.get("fingerprint") != wanted:
        return None
    found = _built(dist, current, reused=True, started=started)
    if found is not None:
        log.info(f"environment up to date: {found.archive} ({_mib(found.archive)} MiB)")
    return found


def _build(root: Path, dist: Path, wanted: str, started: float) -> Build:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise EnvironmentProblem(
            "building the job environment needs uv (python3 -m pip install uv), not found"
        )
    scratch = dist / f".build-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        log.info(f"building the job environment in {dist} (uv.lock and sources changed)")
        _step(
            "building the batchml wheel", [uv, "build", "--wheel", "--out-dir", str(scratch)], root
        )
        [wheel] = scratch.glob("batchml-*.whl")
        requirements = scratch / "requirements.txt"
        _step(
            "exporting the locked runtime dependencies",
            [
                uv,
                "export",
                "--frozen",
                "--no-dev",
                "--no-emit-project",
                "--no-hashes",
                "--quiet",
                "-o",
                str(requirements),
            ],
            root,
        )
        env = scratch / "env"
        _step(
            "creating the virtualenv", [uv, "venv", "--quiet", "-p", sys.executable, str(env)], root
        )
        python = str(env / "bin" / "python")
        _step(
            "installing the locked dependencies",
            [uv, "pip", "install", "--quiet", "-p", python, "-r", str(requirements)],
            root,
        )
        _step(
            "installing the batchml wheel",
            [uv, "pip", "install", "--quiet", "--no-deps", "-p", python, str(wheel)],
            root,
        )
        log.info("packing the environment (venv-pack)")
        _pack(env, scratch / ARCHIVE)
        for old in dist.glob("batchml-*.whl"):
            old.unlink()
        for name in (ARCHIVE, wheel.name):
            (scratch / name).replace(dist / name)
        record = {"fingerprint": wanted, "wheel": wheel.name, "python": sys.executable}
        (scratch / FINGERPRINT).write_text(json.dumps(record, indent=2) + "\n")
        (scratch / FINGERPRINT).replace(dist / FINGERPRINT)  # read whole or not at all
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    built = _built(dist, record, reused=False, started=started)
    assert built is not None
    log.info(
        f"environment built: {built.archive} ({_mib(built.archive)} MiB, {built.seconds:.0f} s)"
    )
    return built


def entry_file(dist: Path) -> Path:
    """The driver entry spark-submit runs (all that local mode needs from dist/)."""
    entry = dist / ENTRY
    if not entry.is_file() or entry.read_text() != ENTRY_TEXT:
        dist.mkdir(parents=True, exist_ok=True)
        scratch = dist / f".{ENTRY}.{uuid.uuid4().hex}"
        scratch.write_text(ENTRY_TEXT)
        scratch.replace(entry)  # a submit starting meanwhile never reads half a file
    return entry


def _pack(env: Path, output: Path) -> None:
    import venv_pack

    site = next((env / "lib").glob("python3*/site-packages")).relative_to(env)
    left_out = [
        site / "pyspark" / "jars" / "*",  # executors run the cluster's Spark
        site / "*" / "tests" / "*",  # the libraries' own test suites (120 MB)
    ]
    try:
        venv_pack.pack(
            prefix=str(env),
            output=str(output),
            compress_level=1,  # 3x faster than the default for 10% more bytes
            filters=[("exclude", str(pattern)) for pattern in left_out],
            force=True,
        )
    except Exception as exc:  # venv-pack's own error types
        raise EnvironmentProblem(f"packing the environment failed: {exc}") from None


def _step(what: str, command: list[str], cwd: Path) -> None:
    log.info(what)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise EnvironmentProblem(f"building the job environment failed at {what}: {reason}")


def _read_fingerprint(dist: Path) -> dict | None:
    try:
        return json.loads((dist / FINGERPRINT).read_text())
    except (OSError, ValueError):
        return None


def _built(dist: Path, record: dict, *, reused: bool, started: float) -> Build | None:
    paths = (dist / ARCHIVE, dist / record.get("wheel", "-"))
    if not all(path.is_file() for path in paths):
        return None
    return Build(
        folder=dist,
        archive=paths[0],
        wheel=paths[1],
        entry=entry_file(dist),
        fingerprint=record["fingerprint"],
        reused=reused,
        seconds=time.monotonic() - started,
    )


def _mib(path: Path) -> int:
    return round(path.stat().st_size / 2**20)
