"""``chalice local`` with a listen backlog that survives a burst of clients.

``chalice local`` serves with Python's ``http.server``, whose listen queue holds 5 connections:
beyond that the kernel resets them (100 concurrent POSTs lost about 30 in tests/reliability).
API Gateway has no such limit, so locally the queue is made as deep as the system allows.

    python -m infra.local.serve --no-autoreload --host 127.0.0.1 --port 8000 --stage local

:func:`serving` runs it in a child process on a free port (the tests and the API benchmark).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from chalice import local
from chalice.cli import main as chalice_main

from infra.local.postgres import free_port
from infra.local.settings import HOST, REPO_ROOT


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, stage: str) -> Iterator[str]:
    """The API under ``chalice local`` (one process, no autoreload) with ``env`` and ``stage``,
    its output in ``log``, on a free loopback port; yields its URL once it answers."""
    url = f"http://{HOST}:{free_port()}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.serve", "--no-autoreload", "--host", HOST,
             "--port", url.rsplit(":", 1)[1], "--stage", stage],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        _wait_until_answering(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answering(process: subprocess.Popen, url: str, log: Path) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"chalice local exited:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/openapi.json", timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"chalice local did not answer on {url}:\n{log.read_text()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    local.ThreadedHTTPServer.request_queue_size = socket.SOMAXCONN
    sys.argv = ["chalice", "local", *(sys.argv[1:] if argv is None else argv)]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
