"""Start and stop a moto server, the local AWS endpoint, with its PID and log in a state folder.

A server we started is recorded in ``moto.pid``; an endpoint that already answers on the port
(someone's moto or LocalStack) is reused and never stopped by us.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra.local.errors import StackError
from infra.local.settings import HOST

START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 10


def endpoint_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def probe(url: str) -> bool | None:
    """``True`` when an S3-compatible endpoint answers at ``url``, ``False`` when something else
    does, ``None`` when nothing listens."""
    try:
        with urllib.request.urlopen(url + "/", timeout=3) as response:
            body = response.read(4096)
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, OSError):
        return None
    return b"ListAllMyBucketsResult" in body


def alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child that has exited
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def owned_pid(state_dir: Path) -> int | None:
    """PID of the moto server this state folder started, if it still runs."""
    pid_file = Path(state_dir) / "moto.pid"
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"moto" in cmdline and alive(pid) else None


def _binary() -> str:
    beside_python = Path(sys.executable).parent / "moto_server"
    found = str(beside_python) if beside_python.exists() else shutil.which("moto_server")
    if not found:
        raise StackError("moto_server not found: pip install -r requirements-dev.txt (moto)")
    return found


def start(state_dir: Path, port: int) -> str:
    """Make an endpoint answer on ``port``: "already running", "reused" or "started"."""
    url = endpoint_url(port)
    answer = probe(url)
    if answer and owned_pid(state_dir):
        return "already running"
    if answer:
        return "reused"
    if answer is False:
        raise StackError(f"port {port} on {HOST} answers, but not as an S3/moto endpoint")
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "moto.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [_binary(), "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: outlives the caller, ignores its Ctrl-C
        )
    (state_dir / "moto.pid").write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not probe(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = log_path.read_text(errors="replace")[-1500:].strip()
            raise StackError(f"moto server did not start on port {port}; {log_path}:\n{tail}")
        time.sleep(0.1)
    return "started"


def stop(state_dir: Path) -> bool:
    """Stop the moto server this state folder started; return whether one was running."""
    pid = owned_pid(state_dir)
    (Path(state_dir) / "moto.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        while alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
    return True
