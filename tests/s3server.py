"""An S3-compatible server on 127.0.0.1 for the object-store tests: moto's standalone
server (a dev dependency; it honours `If-None-Match` conditional writes, which deltalake's
commits rely on), started in a work dir and stopped by its process id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from standalone import free_port

START_TIMEOUT_SECONDS = 30
# moto accepts any credentials; a wrong-credentials test uses a server with auth on
ACCESS_KEY = "batchml-test-key"
SECRET_KEY = "batchml-test-secret/with+signs"
REGION = "us-east-1"


@contextmanager
def s3_server(workdir: Path, *, authenticate: bool = False) -> Iterator[str]:
    """Start moto's server; yield its endpoint URL; stop it (by pid) at the end. With
    `authenticate`, requests are checked against moto's IAM (no user exists: every key
    is refused, as a wrong one is by a real store)."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = Path(sys.executable).parent / "moto_server"
    environ = {**os.environ}
    if authenticate:
        environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    for attempt in range(3):
        # a free port may be taken by another test worker's server before ours binds it:
        # then ours exits, perhaps after the other one answered for it; try another port
        port = free_port()
        with (workdir / f"moto-{attempt}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=environ,
            )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(endpoint, process, workdir)
            time.sleep(1.0)
            if process.poll() is None:
                break
        except RuntimeError:
            _stop(process)
            if attempt == 2:
                raise
    else:
        raise RuntimeError(f"moto_server exited three times; see {workdir}/moto-*.log")
    try:
        yield endpoint
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(endpoint: str, process: subprocess.Popen, workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited; see {workdir}/moto-*.log")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT_SECONDS} s")


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """A new empty bucket on the server; its name."""
    name = name or f"lake-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return name


def s3_environment(endpoint: str) -> dict[str, str]:
    """The standard variables a user would export to reach the server."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
