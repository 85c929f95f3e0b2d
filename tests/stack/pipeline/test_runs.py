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


def queue(db, run_id: str, src: runs.Source, keys=("peru",)) -> str | None:
    """Take in one upload version as the intake does (its job to be started within a minute)."""
    return runs.take_in(db, run_id, src, keys, 60)


def test_an_object_is_queued_once_per_countries_and_a_failed_upload_only_by_a_new_upload(db):
    assert queue(db, "r1", source()) == "r1"
    assert queue(db, "r2", source()) is None
    assert queue(db, "r3", source(etag="e2")) == "r3"  # the object changed
    assert queue(db, "r4", source(), None) == "r4"  # other countries
    runs.fail_run(db, "r1", "boom")
    assert queue(db, "r5", source()) is None  # this very upload has its outcome: failed
    assert queue(db, "r6", source(minutes=1)) == "r6"  # the same bytes uploaded again


def event_run(db, run_id: str, src: runs.Source) -> None:
    """A run as an upload event makes it: queued by the handler, then started by the job."""
    assert queue(db, run_id, src) == run_id
    runs.start_run(db, run_id, src, ("peru",))


def test_an_event_run_of_an_object_already_processed_is_refused_with_the_run(db):
    event_run(db, "first", source())
    runs.publish_run(db, "first", result(2640.0))
    with db, db.cursor() as cur:  # a replayed event that raced the first run's queueing
        cur.execute(
            "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, countries,"
            " status) VALUES ('second', 'voucher-raw', 'incoming/a.parquet', 'e1',"
            " '{peru}', 'waiting')"
        )
    with pytest.raises(runs.AlreadyProcessed, match="first"):
        runs.start_run(db, "second", source(), ("peru",))
    with pytest.raises(runs.AlreadyFinished, match="first already succeeded"):
        runs.start_run(db, "first", source(), ("peru",))  # a late retry of a finished run


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
    assert queue(db, "again", source(minutes=1)) == "again"  # reaped: the re-upload runs
    with db.cursor() as cur:
        cur.execute("SELECT status, error FROM runs WHERE run_id = 'stalled'")
        status, error = cur.fetchone()
    assert status == "failed" and error.startswith("abandoned: no heartbeat from its job since")
    assert not runs.renew_lease(db, "stalled")  # its heartbeat learns it lost the lease
    with pytest.raises(runs.NotRunning, match="stalled is failed"):
        runs.publish_run(db, "stalled", result(2640.0))
    assert published(db) == {}


def expire(db, run_id: str) -> None:
    with db, db.cursor() as cur:
        cur.execute(
            "UPDATE runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = %s", (run_id,)
        )


def status_of(db, run_id: str) -> tuple:
    with db, db.cursor() as cur:
        cur.execute("SELECT status, run_status(runs), error FROM runs WHERE run_id = %s", (run_id,))
        return cur.fetchone()


def test_an_expired_lease_fences_for_good_the_renewal_the_publish_and_every_writer(db):
    """What readers are shown (failed, abandoned) is what the writers enforce: the heartbeat of
    a job that comes back cannot renew, its publish is refused, and no statement whatever can
    turn the run into anything but failed."""
    event_run(db, "frozen", source())
    expire(db, "frozen")
    assert status_of(db, "frozen")[:2] == ("running", "failed")  # shown failed before recorded
    assert not runs.renew_lease(db, "frozen")  # refused, and recorded
    status, shown, error = status_of(db, "frozen")
    assert (status, shown) == ("failed", "failed") and error.startswith("abandoned")
    with pytest.raises(runs.NotRunning, match="frozen is failed"):
        runs.publish_run(db, "frozen", result(2640.0))
    with pytest.raises(runs.AlreadyFinished, match="frozen already failed"):
        runs.start_run(db, "frozen", source(), ("peru",))  # a retry of the job run
    for statement in (
        "UPDATE runs SET status = 'succeeded' WHERE run_id = 'frozen'",
        "UPDATE runs SET status = 'running', heartbeat_at = now() WHERE run_id = 'frozen'",
    ):
        with pytest.raises(psycopg2.Error) as refused, db, db.cursor() as cur:
            cur.execute(statement)
        assert refused.value.pgcode == "VS001" and "for good" in str(refused.value)
    assert status_of(db, "frozen")[:2] == ("failed", "failed") and published(db) == {}


def test_a_running_run_whose_lease_ran_out_is_refused_by_the_database_before_anyone_reaps_it(db):
    event_run(db, "lapsed", source())
    expire(db, "lapsed")
    with pytest.raises(psycopg2.Error) as refused, db, db.cursor() as cur:
        cur.execute("UPDATE runs SET status = 'succeeded' WHERE run_id = 'lapsed'")
    assert refused.value.pgcode == "VS001" and "lost its lease" in str(refused.value)
    assert runs.fail_run(db, "lapsed", "the job's own error, after the lease")
    assert status_of(db, "lapsed")[2].startswith("abandoned")  # the error it was shown with


def test_a_succeeded_run_stays_succeeded(db):
    event_run(db, "done", source())
    runs.publish_run(db, "done", result(2640.0))
    assert not runs.fail_run(db, "done", "a late failure")
    with pytest.raises(psycopg2.Error) as refused, db, db.cursor() as cur:
        cur.execute("UPDATE runs SET status = 'failed' WHERE run_id = 'done'")
    assert refused.value.pgcode == "VS001"
    assert status_of(db, "done") == ("succeeded", "succeeded", None)


def test_only_the_job_run_holding_a_run_renews_it_and_a_second_job_run_leaves_it(db):
    assert queue(db, "twice", source()) == "twice"
    runs.start_run(db, "twice", source(), ("peru",), job_run_id="jr_first")
    with pytest.raises(runs.AlreadyRunning, match="jr_first"):
        runs.start_run(db, "twice", source(), ("peru",), job_run_id="jr_second")
    assert runs.renew_lease(db, "twice", "jr_first")
    assert not runs.renew_lease(db, "twice", "jr_second")
    retry = "jr_first_attempt_1"  # Glue's next attempt of the same job run
    runs.start_run(db, "twice", source(), ("peru",), job_run_id=retry)
    assert runs.renew_lease(db, "twice", retry)
    assert status_of(db, "twice")[:2] == ("running", "running")


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
