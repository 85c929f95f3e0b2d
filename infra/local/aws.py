"""The local AWS endpoint: a moto server (the default) or LocalStack, started from this checkout
with its PID and log in a state folder.

Any endpoint already answering on the port (someone's moto or LocalStack, judged by a signed S3
call, as any client sees it) is reused and never stopped by us; one we started is recorded in
``aws.pid`` and stopped by ``down``.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.local import localstack, processes
from infra.local.errors import StackError
from infra.local.settings import HOST, Settings

START_TIMEOUT_S = 60
_PID_FILE, _PORT_FILE, _LOG = "aws.pid", "aws.port", "aws.log"
#: How our processes are told from others reusing a PID: their command line holds one of these.
_MARKERS = {"moto": b"moto_server", "localstack": b"localstack.runtime.main"}


def endpoint_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def probe(url: str) -> bool | None:
    """``True`` when an S3-compatible endpoint answers a signed ``ListBuckets`` at ``url`` (moto,
    LocalStack or AWS-like), ``False`` when something else listens, ``None`` when nothing does."""
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.socket() as sock:
        if sock.connect_ex((host, int(port))) != 0:
            return None
    from infra.local import s3

    quick = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})
    try:
        answer = s3.client(url, config=quick).list_buckets()
    except (ClientError, BotoCoreError, ValueError):
        return False
    return "Buckets" in answer or "Owner" in answer


def owned_pid(state_dir: Path, port: int | None = None) -> int | None:
    """PID of the endpoint this state folder started, if it still runs (and serves ``port``,
    when given: another endpoint on another port is not the one we started)."""
    pid_file = Path(state_dir) / _PID_FILE
    if port is not None and _recorded_port(state_dir) != port:
        return None
    return next(
        (pid for marker in _MARKERS.values() if (pid := processes.recorded_pid(pid_file, marker))),
        None,
    )


def _recorded_port(state_dir: Path) -> int | None:
    try:
        return int((Path(state_dir) / _PORT_FILE).read_text())
    except (OSError, ValueError):
        return None


def _moto_command(port: int) -> list[str]:
    beside_python = Path(sys.executable).parent / "moto_server"
    found = str(beside_python) if beside_python.exists() else shutil.which("moto_server")
    if not found:
        raise StackError("moto_server not found: pip install -r requirements-dev.txt (moto)")
    return [found, "-H", HOST, "-p", str(port)]


def start(settings: Settings) -> str:
    """Make an endpoint answer on the settings' port: "already running", "reused" or
    "started" (the settings' emulator, moto or LocalStack, installed on first use)."""
    url, port, state_dir = settings.endpoint_url, settings.aws_port, Path(settings.state_dir)
    answer = probe(url)
    if answer and owned_pid(state_dir, port):
        return "already running"
    if answer:
        return "reused"
    if answer is False:
        raise StackError(f"port {port} on {HOST} answers, but not as an S3 endpoint")
    if settings.aws_emulator == "localstack":
        command, env = localstack.command(state_dir, port)
    else:
        command, env = _moto_command(port), None
    log = state_dir / _LOG
    process = processes.spawn(command, log, state_dir / _PID_FILE, env)
    (state_dir / _PORT_FILE).write_text(str(port))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not probe(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = log.read_text(errors="replace")[-1500:].strip()
            what = settings.aws_emulator
            raise StackError(f"{what} did not start on port {port}; {log}:\n{tail}")
        time.sleep(0.1)
    return "started"


def stop(state_dir: Path) -> bool:
    """Stop the endpoint this state folder started; return whether one was running."""
    pid = owned_pid(state_dir)
    for name in (_PID_FILE, _PORT_FILE):
        (Path(state_dir) / name).unlink(missing_ok=True)
    if pid is None:
        return False
    processes.terminate(pid)
    return True
