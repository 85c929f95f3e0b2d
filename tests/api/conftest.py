"""Fixtures of the API tests: a fresh store per test, the Chalice test client, published runs,
and ``chalice local`` serving over HTTP on a free loopback port."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chalice.test import Client

from app import app
from chalicelib.api.store import default_store
from infra.local.serve import serving
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


@pytest.fixture(scope="session")
def local_api(database_url, tmp_path_factory):
    """The API under ``chalice local`` on the test database."""
    log = tmp_path_factory.mktemp("chalice-local") / "server.log"
    with serving({**os.environ, "CACHE_TTL_SECONDS": "0"}, log, TEST_STAGE) as url:
        yield url
