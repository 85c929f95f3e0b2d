"""Run records on the real PostgreSQL: once per object, retries, and publication order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib import runs

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def source(key: str = "incoming/a.parquet", etag: str = "e1", minutes: int = 0) -> runs.Source:
    return runs.Source("voucher-raw", key, etag, T0 + timedelta(minutes=minutes))


def result(amount: float) -> runs.RunResult:
    stats = runs.CountryStats("peru", "Peru", 3, 3, dict.fromkeys(["duplicate_row"], 0), {})
    return runs.RunResult(
        rows_read=3,
        rows_out_of_scope=0,
        countries=[stats],
        fallbacks=[runs.Fallback("peru", amount, 3, 3)],
    )


def published(db) -> dict[str, str]:
    with db.cursor() as cur:
        cur.execute("SELECT country_key, run_id FROM published_country")
        return dict(cur.fetchall())


def test_an_object_is_queued_once_per_countries_until_its_run_fails(db):
    assert runs.queue_run(db, "r1", source(), ("peru",)) == "r1"
    assert runs.queue_run(db, "r2", source(), ("peru",)) is None
    assert runs.queue_run(db, "r3", source(etag="e2"), ("peru",)) == "r3"  # the object changed
    assert runs.queue_run(db, "r4", source(), None) == "r4"  # other countries
    runs.fail_run(db, "r1", "boom")
    assert runs.queue_run(db, "r5", source(), ("peru",)) == "r5"  # a failed run can be retried


def test_a_manual_run_of_an_object_already_processed_is_refused_with_the_run(db):
    runs.start_run(db, "first", source(), ("peru",))
    runs.publish_run(db, "first", result(2640.0))
    with pytest.raises(runs.AlreadyProcessed, match="first"):
        runs.start_run(db, "second", source(), ("peru",))
    runs.start_run(db, "first", source(), ("peru",))  # a retry of the same run goes on


def test_a_run_of_an_older_object_never_replaces_a_newer_publication(db):
    runs.start_run(db, "newer", source("incoming/new.parquet", minutes=5), ("peru",))
    runs.start_run(db, "older", source("incoming/old.parquet", minutes=1), ("peru",))
    assert runs.publish_run(db, "newer", result(2640.0)) == ["peru"]
    assert runs.publish_run(db, "older", result(4400.0)) == []
    assert published(db) == {"peru": "newer"}
    with db.cursor() as cur:
        cur.execute("SELECT run_id, status, published_countries FROM runs ORDER BY run_id")
        assert cur.fetchall() == [("newer", "succeeded", ["peru"]), ("older", "succeeded", [])]
    runs.start_run(db, "newest", source("incoming/newest.parquet", minutes=9), ("peru",))
    assert runs.publish_run(db, "newest", result(1760.0)) == ["peru"]
    assert published(db) == {"peru": "newest"}
