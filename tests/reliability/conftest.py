"""Fixtures of the reliability tests: the API's and the pipeline's own, reused, plus throwaway
servers (a PostgreSQL and a moto server of the test's own) that a test may stop and start."""

from __future__ import annotations

import pytest

from glue_jobs import lake_io
from infra.local import moto as local_moto
from infra.local import postgres
from tests.api.conftest import client, fresh_store, local_api, published  # noqa: F401
from tests.api.test_store import throwaway_server  # noqa: F401


@pytest.fixture
def s3_client_cache():
    """The job's S3 client is cached per process: a test pointing it elsewhere starts afresh."""
    lake_io._s3.cache_clear()
    yield
    lake_io._s3.cache_clear()


@pytest.fixture
def throwaway_endpoint(tmp_path, s3_client_cache):
    """A moto server of this test's own on a free port: ``(state_dir, port, url)``; stopped at
    the end whatever the test did to it."""
    state, port = tmp_path / "moto", postgres.free_port()
    local_moto.start(state, port)
    try:
        yield state, port, local_moto.endpoint_url(port)
    finally:
        local_moto.stop(state)
