"""PostgreSQL goes away while a run works: a PostgreSQL server of the test's own is really stopped
(and started again) between the run's transform and its publish, while the API keeps serving.

Serving with the database stopped (and fresh data once it is back) is proven in
``tests/stack/api/test_store.py``; here the pipeline side, with the API watching.
"""

from __future__ import annotations

import logging

import psycopg2
import pytest

from glue_jobs import pipeline
from infra.local import postgres
from scripts import sample_runs
from scripts.sample_runs import SAMPLE
from tests.helpers import get, post, run_job, sample_bytes, upload


def fetch(url: str, sql: str, *params) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def run_setup(local_stack, buckets, spark, throwaway_server, s3, tmp_path):
    """A Peru sample uploaded; the throwaway server publishes the first sample run."""
    return upload(s3, buckets, "incoming/outage.parquet", sample_bytes(tmp_path, rows=2_000))


def stop_after_transform(monkeypatch, server, restart: bool) -> None:
    """The next run's transform really happens; then its database really stops (and restarts)."""
    transform, armed = pipeline.transform, [True]

    def transform_then_stop(*args, **kwargs):
        result = transform(*args, **kwargs)
        if armed:
            armed.clear()
            postgres.stop(server.data_dir)
            if restart:
                postgres.start(server.data_dir, server.port)
        return result

    monkeypatch.setattr(pipeline, "transform", transform_then_stop)


def test_database_down_at_publish_fails_the_job_publishes_nothing_and_a_retry_works(
    run_setup, buckets, throwaway_server, client, monkeypatch, caplog
):
    url = throwaway_server.url
    first = post(client, SAMPLE)
    assert first[0] == 200 and first[1]["voucher_amount"] == 2640  # the API loaded FIRST

    stop_after_transform(monkeypatch, throwaway_server, restart=False)
    with caplog.at_level(logging.ERROR), pytest.raises(psycopg2.OperationalError):
        run_job(buckets, run_setup, countries="Peru", run_id="run-db-down")  # exits non-zero
    log = caplog.text
    assert "run run-db-down failed" in log and "OperationalError" in log
    assert "could not be recorded" in log and "stays 'running'" in log
    assert "--run_id run-db-down" in log  # what to do about it

    # While the database is down the API answers from its cache and says it is degraded.
    assert post(client, SAMPLE) == first
    status, health = get(client, "/health")
    assert (status, health["status"], health["database"]) == (200, "degraded", "unreachable")

    postgres.start(throwaway_server.data_dir, throwaway_server.port)
    # Nothing of the run was published; its record honestly says it never finished.
    assert fetch(
        url, "SELECT status, finished_at, error FROM runs WHERE run_id = %s", "run-db-down"
    ) == [("running", None, None)]
    assert fetch(url, "SELECT count(*) FROM run_country_stats WHERE run_id = 'run-db-down'") == [
        (0,)
    ]
    assert set(fetch(url, "SELECT run_id FROM published_country")) == {(sample_runs.FIRST_RUN,)}
    status, record = get(client, "/runs/run-db-down")
    assert (status, record["status"], record["finished_at"]) == (200, "running", None)

    # A retry of the run (as Glue retries: the same arguments) publishes it; the API, never
    # restarted, serves it at once.
    run_job(buckets, run_setup, countries="Peru", run_id="run-db-down")
    assert fetch(url, "SELECT status, error FROM runs WHERE run_id = 'run-db-down'") == [
        ("succeeded", None)
    ]
    assert dict(fetch(url, "SELECT country_key, run_id FROM published_country"))["peru"] == (
        "run-db-down"
    )
    status, health = get(client, "/health")
    assert (status, health["status"]) == (200, "ok")
    assert {p["country_code"]: p["run_id"] for p in health["published"]}["Peru"] == "run-db-down"
    [peru] = get(client, "/selection_criteria?country=Peru")[1]["countries"]
    assert peru["run"]["run_id"] == "run-db-down"


def test_a_database_restart_during_the_transform_does_not_fail_the_run(
    run_setup, buckets, throwaway_server, monkeypatch
):
    """A long run must not depend on one connection surviving it: RDS restarts, fails over."""
    stop_after_transform(monkeypatch, throwaway_server, restart=True)
    run_job(buckets, run_setup, countries="Peru", run_id="run-db-bounced")
    url = throwaway_server.url
    assert fetch(url, "SELECT status, error FROM runs WHERE run_id = 'run-db-bounced'") == [
        ("succeeded", None)
    ]
    assert dict(fetch(url, "SELECT country_key, run_id FROM published_country"))["peru"] == (
        "run-db-bounced"
    )
