"""Fixtures of the API tests: a fresh store per test, the Chalice test client, published runs,
and ``chalice local`` serving over HTTP on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client

from app import app
from chalicelib.api.store import default_store
from infra.local import postgres
from tests.api import sample_runs

REPO_ROOT = Path(__file__).resolve().parents[2]
#: A stage absent from .chalice/config.json: the tests' environment reaches the handlers as it is.
TEST_STAGE = "test"


@pytest.fixture(autouse=True)
def fresh_store(monkeypatch):
    """Each test starts with no container state; the cache checks on every request (TTL 0)."""
    monkeypatch.setenv("CACHE_TTL_SECONDS", "0")
    default_store.cache_clear()
    yield
    default_store.cache_clear()


@pytest.fixture
def client(database_url):
    with Client(app, stage_name=TEST_STAGE, project_dir=str(REPO_ROOT)) as test_client:
        yield test_client


@pytest.fixture
def published(db):
    """The first run published (Peru, Latvia, China); yields the database connection."""
    sample_runs.publish(db, sample_runs.FIRST_RUN, sample_runs.FIRST)
    return db


def _wait_until_answering(process: subprocess.Popen, url: str, log: Path) -> None:
    import urllib.request

    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"chalice local exited:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/openapi.json", timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"chalice local did not answer on {url}:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def chalice_local(env: dict, log: Path) -> Iterator[str]:
    """The API under ``chalice local`` (one process, no autoreload) with ``env``, its output in
    ``log``, on a free loopback port; yields its URL."""
    port = postgres.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.serve", "--no-autoreload", "--host", "127.0.0.1",
             "--port", str(port), "--stage", TEST_STAGE],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
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


@pytest.fixture(scope="session")
def local_api(database_url, tmp_path_factory):
    """The API under ``chalice local`` on the test database."""
    log = tmp_path_factory.mktemp("chalice-local") / "server.log"
    with chalice_local({**os.environ, "CACHE_TTL_SECONDS": "0"}, log) as url:
        yield url
