"""The event-driven acceptance, upload -> run -> publish -> answer, on each AWS emulator the local
stack can run: moto (the default) and LocalStack (``make up AWS=localstack``; installed on first
use from PyPI into the state folder with a Python 3.12+, skipped with the reason when that cannot
be done). The same configuration, nothing emulator-specific: what the SPEC calls "the same config
works against LocalStack"."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace

import pytest

from chalicelib import intake as upload_intake
from glue_jobs import lake_io
from infra.local import aws, events, localstack, stack
from infra.local import catalog as local_catalog
from infra.local import pipeline as local_pipeline
from infra.local import s3 as local_s3
from infra.local.errors import StackError
from infra.local.processes import free_port
from scripts.sample_runs import SAMPLE
from tests.helpers import fetch, get, listening, post, put, sample_bytes, served, settle


@pytest.fixture(scope="session")
def localstack_settings(local_stack, tmp_path_factory):
    """A LocalStack of this session's own on a free loopback port (stopped at the end)."""
    try:
        localstack.venv()
    except StackError as exc:
        pytest.skip(f"LocalStack cannot be installed here: {exc}")
    # No catalog database: LocalStack's free edition has no Glue.
    settings = replace(
        local_stack.settings,
        state_dir=tmp_path_factory.mktemp("localstack"),
        aws_port=free_port(),
        aws_emulator="localstack",
        catalog_database="",
    )
    assert aws.start(settings) == "started"
    yield settings
    aws.stop(settings.state_dir)


@pytest.fixture(params=["moto", "localstack"])
def endpoint(request, local_stack, database_url, db, tmp_path, monkeypatch):
    """The stack's names on one emulator: buckets, queue and notification of this test's own;
    this process's clients and the jobs it launches pointed at it; the pump on its queue."""
    base = (
        local_stack.settings
        if request.param == "moto"
        else request.getfixturevalue("localstack_settings")
    )
    suffix = uuid.uuid4().hex[:8]
    settings = replace(
        base,
        raw_bucket=f"raw-{suffix}",
        lake_bucket=f"lake-{suffix}",
        upload_queue=f"uploads-{suffix}",
        visibility_timeout_s=1,
        catalog_database=base.catalog_database and f"lake_{suffix}",
    )
    s3 = local_s3.client(settings.endpoint_url)
    for bucket in (settings.raw_bucket, settings.lake_bucket):
        local_s3.ensure_bucket(s3, bucket)
    events.ensure_upload_queue(settings)
    if settings.catalog_database:
        local_catalog.ensure(settings)
    for name, value in {
        **settings.env(),
        "DATABASE_URL": database_url,
        "JOB_LOG_DIR": str(tmp_path / "runs"),
    }.items():
        monkeypatch.setenv(name, value)
    for cached in (upload_intake._client, lake_io._s3):  # built for the other endpoint
        cached.cache_clear()
    from app import on_upload

    pump = events.Pump(settings, on_upload, batch_size=10, wait_s=1)
    while pump.poll_once():  # S3's test event, if the emulator sends one
        pass
    yield settings, s3, pump
    for cached in (upload_intake._client, lake_io._s3):
        cached.cache_clear()


def test_an_upload_is_run_published_and_answered_on_every_emulator(endpoint, client, db, tmp_path):
    settings, s3, pump = endpoint
    buckets = type("Buckets", (), {"raw": settings.raw_bucket})
    put(s3, buckets, "incoming/history.parquet", sample_bytes(tmp_path, rows=3_000, seed=81))
    [(run_id, status, error)] = settle(pump, db, "incoming/history.parquet")
    assert (status, error) == ("succeeded", None)
    assert served(db) == {"peru": run_id}
    lake = s3.list_objects_v2(Bucket=settings.lake_bucket, Prefix=f"curated/run_id={run_id}/")
    assert lake.get("KeyCount", 0) > 0  # the job wrote its lake through the same endpoint
    if settings.catalog_database:  # and registered it where the emulator has a catalog
        glue = local_s3.client(settings.endpoint_url, "glue")
        partitions = glue.get_partitions(
            DatabaseName=settings.catalog_database, TableName="curated"
        )["Partitions"]
        assert [p["Values"] for p in partitions] == [[run_id, "peru"]]
    status, answer = post(client, SAMPLE)
    assert status == 200 and answer["basis"] in ("segment", "country")
    [country] = get(client, "/selection_criteria?country=Peru")[1]["countries"]
    assert country["run"]["run_id"] == run_id  # the API answers from this run


def test_localstack_listens_on_loopback_only(localstack_settings):
    """Left to itself LocalStack listens on every interface here (it takes the machine for a
    container, and its default server ignores the listen address)."""
    pid = aws.owned_pid(localstack_settings.state_dir)
    addresses = listening(pid)
    assert ("127.0.0.1", localstack_settings.aws_port) in addresses
    assert {host for host, _ in addresses} == {"127.0.0.1"}, addresses


def test_the_stack_reuses_any_endpoint_already_serving_on_its_port(localstack_settings, tmp_path):
    """Judged by a signed S3 call, as clients see it: LocalStack answers an unsigned ``GET /``
    with an empty 200, not a bucket list."""
    guest = replace(localstack_settings, state_dir=tmp_path / "guest", aws_emulator="moto")
    assert aws.probe(guest.endpoint_url) is True
    assert aws.start(guest) == "reused"
    assert aws.owned_pid(guest.state_dir) is None and not aws.stop(guest.state_dir)  # not ours


def test_make_up_and_make_pipeline_work_unchanged_on_a_localstack_someone_else_started(
    localstack_settings, database_url, db, tmp_path, monkeypatch, spark
):
    """A LocalStack already listening (here on a port of the test's own; for a user, 4566),
    a plain ``make up`` (AWS=moto, the lake tables' catalog by default): the endpoint is reused
    and judged by what it can do. Its Glue answers 501, so there is no catalog, said once, and
    ``make pipeline`` runs and publishes without registering partitions."""
    suffix = uuid.uuid4().hex[:8]
    for name, value in {
        "AWS_ENDPOINT_PORT": str(localstack_settings.aws_port),
        "DATABASE_URL": database_url,
        "RAW_BUCKET": f"raw-{suffix}",
        "LAKE_BUCKET": f"lake-{suffix}",
    }.items():
        monkeypatch.setenv(name, value)
    for name in localstack_settings.env():  # make pipeline exports them: restored afterwards
        monkeypatch.setenv(name, os.environ.get(name, ""))
    for name in ("AWS_EMULATOR", "CATALOG_DATABASE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    said: list[str] = []
    running = stack.up(echo=said.append)
    assert running.services["aws"] == "reused"
    assert [line.split()[0] for line in said if "501" in line] == ["catalog"], said

    sample = tmp_path / "history.parquet"
    sample.write_bytes(sample_bytes(tmp_path, rows=2_000, seed=83))
    for cached in (upload_intake._client, lake_io._s3):  # built for another endpoint
        cached.cache_clear()
    assert local_pipeline.main(["--data", str(sample)]) == 0
    [(run_id, status)] = fetch(db, "SELECT run_id, status FROM runs")
    assert status == "succeeded" and served(db) == {"peru": run_id}
    s3 = local_s3.client(localstack_settings.endpoint_url)
    lake = s3.list_objects_v2(Bucket=f"lake-{suffix}", Prefix=f"curated/run_id={run_id}/")
    assert lake.get("KeyCount", 0) > 0
    for cached in (upload_intake._client, lake_io._s3):
        cached.cache_clear()
