"""Run records on the real PostgreSQL: once per object for events, always for runs asked for by
hand, retries, leases, and publication order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg2
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


def event_run(db, run_id: str, src: runs.Source) -> None:
    """A run as an upload event makes it: queued by the handler, then started by the job."""
    assert runs.queue_run(db, run_id, src, ("peru",)) == run_id
    runs.start_run(db, run_id, src, ("peru",))


def test_an_event_run_of_an_object_already_processed_is_refused_with_the_run(db):
    event_run(db, "first", source())
    runs.publish_run(db, "first", result(2640.0))
    with db, db.cursor() as cur:  # a replayed event that raced the first run's queueing
        cur.execute(
            "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, countries,"
            " status) VALUES ('second', 'voucher-raw', 'incoming/a.parquet', 'e1',"
            " '{peru}', 'failed')"
        )
    with pytest.raises(runs.AlreadyProcessed, match="first"):
        runs.start_run(db, "second", source(), ("peru",))
    runs.start_run(db, "first", source(), ("peru",))  # a retry of the same run goes on


def test_a_run_asked_for_by_hand_runs_and_publishes_an_object_processed_before(db):
    event_run(db, "by-event", source(minutes=5))
    assert runs.publish_run(db, "by-event", result(2640.0)) == ["peru"]
    runs.start_run(db, "by-hand", source(minutes=1), ("peru",))  # older, processed: runs anyway
    assert runs.publish_run(db, "by-hand", result(4400.0)) == ["peru"]
    assert published(db) == {"peru": "by-hand"}
    with db.cursor() as cur:
        cur.execute("SELECT run_id, requested_by FROM runs ORDER BY run_id")
        assert cur.fetchall() == [("by-event", "event"), ("by-hand", "manual")]


def test_an_event_run_of_an_older_object_never_replaces_a_newer_publication(db):
    event_run(db, "newer", source("incoming/new.parquet", minutes=5))
    event_run(db, "older", source("incoming/old.parquet", minutes=1))
    assert runs.publish_run(db, "newer", result(2640.0)) == ["peru"]
    assert runs.publish_run(db, "older", result(4400.0)) == []
    assert published(db) == {"peru": "newer"}
    with db.cursor() as cur:
        cur.execute("SELECT run_id, status, published_countries FROM runs ORDER BY run_id")
        assert cur.fetchall() == [("newer", "succeeded", ["peru"]), ("older", "succeeded", [])]
    event_run(db, "newest", source("incoming/newest.parquet", minutes=9))
    assert runs.publish_run(db, "newest", result(1760.0)) == ["peru"]
    assert published(db) == {"peru": "newest"}


def test_a_run_whose_lease_ran_out_cannot_publish_and_its_object_runs_again(db):
    event_run(db, "stalled", source())
    with db, db.cursor() as cur:  # its job stalled past the lease (a long pause, a lost worker)
        cur.execute("UPDATE runs SET heartbeat_at = now() - interval '1 hour'")
    assert runs.queue_run(db, "again", source(), ("peru",)) == "again"  # reaped: not blocking
    with db.cursor() as cur:
        cur.execute("SELECT status, error FROM runs WHERE run_id = 'stalled'")
        status, error = cur.fetchone()
    assert status == "failed" and error.startswith("abandoned: no heartbeat from its job since")
    assert not runs.renew_lease(db, "stalled")  # its heartbeat learns it lost the lease
    with pytest.raises(runs.NotRunning, match="stalled is failed"):
        runs.publish_run(db, "stalled", result(2640.0))
    assert published(db) == {}


def with_usage(amount: float, rows: int) -> runs.RunResult:
    """Peru's fallback chosen among ``amount`` (``rows`` kept rows) and 4400 (one row)."""
    stats = runs.CountryStats("peru", "Peru", rows + 1, rows + 1, {}, {})
    return runs.RunResult(
        rows_read=rows + 1,
        rows_out_of_scope=0,
        countries=[stats],
        fallbacks=[runs.Fallback("peru", amount, rows, rows + 1, 4400.0, 1)],
        usage=[
            runs.AmountUsage("peru", None, None, 1, amount, rows),
            runs.AmountUsage("peru", None, None, 2, 4400.0, 1),
        ],
    )


def test_the_usage_is_published_with_the_rest_of_the_run_or_not_at_all(db):
    event_run(db, "first", source())
    runs.publish_run(db, "first", with_usage(2640.0, 2))
    event_run(db, "second", source(etag="e2", minutes=1))
    broken = with_usage(1760.0, 5)
    broken.usage.append(runs.AmountUsage("peru", None, None, 3, 8800.0, 0))  # no rows: refused
    with pytest.raises(psycopg2.IntegrityError, match="voucher_usage"):
        runs.publish_run(db, "second", broken)
    db.rollback()
    assert published(db) == {"peru": "first"}
    with db.cursor() as cur:
        for table in runs.RESULT_TABLES:
            cur.execute(f"SELECT count(*) FROM {table} WHERE run_id = 'second'")  # noqa: S608
            assert cur.fetchone() == (0,), f"{table} holds rows of the run that failed"
        cur.execute(
            "SELECT position, voucher_amount, voucher_rows, amounts FROM voucher_usage"
            " WHERE run_id = 'first' ORDER BY position"
        )
        assert cur.fetchall() == [(1, 2640.0, 2, 1), (2, 4400.0, 1, 1)]
