"""A run's life once its job runs: the claim, the lease its heartbeat renews, and its end.

A running run holds a lease that its job's heartbeat renews: past it, the run is failed
(``abandoned``) for every reader and for good, which the database enforces (``runs_fence``): its
job can neither renew the lease nor publish, and no finished run changes status. A failed run only
records its error, so whatever was published before keeps serving.
"""

from __future__ import annotations

import re

from chalicelib import metrics, settings
from chalicelib.db import Connection, Cursor
from chalicelib.runs import sql
from chalicelib.runs.errors import AlreadyFinished, AlreadyProcessed, AlreadyRunning, ObjectChanged
from chalicelib.runs.model import Source
from chalicelib.runs.sql import CountryKeys
from chalicelib.runs.status import FINISHED, LIVE, WITH_JOB, RequestedBy, RunStatus, sql_list

#: A run whose lease ran out (constant).
_ABANDONED = "run_abandoned(runs)"


def reap_source(cur: Cursor, bucket: str | None, key: str) -> None:
    """Record the abandoned runs of a source as failed."""
    where = f"source_bucket IS NOT DISTINCT FROM %s AND source_key = %s AND {_ABANDONED}"
    for run_id in sql.fail(cur, where, (bucket, key)):
        metrics.run_failed(run_id, "abandoned")


def reap_abandoned(conn: Connection) -> list[str]:
    """Record every run whose lease ran out as failed (what every reader already sees)."""
    with conn, conn.cursor() as cur:
        reaped = sql.fail(cur, f"status = %s AND {_ABANDONED}", (RunStatus.RUNNING,))
    for run_id in reaped:
        metrics.run_failed(run_id, "abandoned")
    return reaped


def _same_job_run(holder: str | None, job_run_id: str | None) -> bool:
    """Whether ``job_run_id`` is the job run holding a run, or Glue's retry of it (Glue names a
    retry attempt ``<first attempt's id>_attempt_<n>``)."""
    if holder is None or job_run_id is None:
        return holder == job_run_id or holder is None
    return re.sub(r"_attempt_\d+$", "", job_run_id) == re.sub(r"_attempt_\d+$", "", holder)


def start_run(
    conn: Connection,
    run_id: str,
    source: Source,
    country_keys: CountryKeys,
    lease_s: int | None = None,
    job_run_id: str | None = None,
) -> None:
    """Claim the run for job run ``job_run_id``: record it running (moving its queued record on,
    or inserting it as a run asked for by hand), with a fresh lease of ``lease_s`` seconds.

    Raises :class:`AlreadyFinished` for a run that finished (or lost its lease),
    :class:`AlreadyRunning` when another job run holds it, :class:`AlreadyProcessed` when the
    run came from an event and another live or succeeded event run has the same object, and
    :class:`ObjectChanged` when the object is not the version this run was queued (or first
    started) for: a run never reads another version than the one it names.
    """
    with conn, conn.cursor() as cur:
        reap_source(cur, source.bucket, source.key)
        _check_claim(cur, run_id, source, country_keys, job_run_id)
        cur.execute(
            """
            INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,
                              source_objects, countries, status, requested_by, started_at,
                              heartbeat_at, lease_seconds, job_run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now(), now(), %s, %s)
            ON CONFLICT (run_id) DO UPDATE
               SET status = EXCLUDED.status, started_at = now(), countries = EXCLUDED.countries,
                   source_etag = COALESCE(runs.source_etag, EXCLUDED.source_etag),
                   source_modified_at = COALESCE(runs.source_modified_at,
                                                 EXCLUDED.source_modified_at),
                   source_objects = EXCLUDED.source_objects,
                   heartbeat_at = now(), lease_seconds = EXCLUDED.lease_seconds,
                   job_run_id = COALESCE(EXCLUDED.job_run_id, runs.job_run_id),
                   status_reason = NULL, error = NULL, finished_at = NULL
            """,
            (
                run_id,
                *sql.source_columns(source),
                sql.countries(country_keys),
                RunStatus.RUNNING,
                RequestedBy.MANUAL,
                lease_s or settings.RUN_LEASE_SECONDS.read(),
                job_run_id,
            ),
        )


def _check_claim(
    cur: Cursor, run_id: str, source: Source, country_keys: CountryKeys, job_run_id: str | None
) -> None:
    """Raise why job run ``job_run_id`` may not claim the run (see :func:`start_run`); lock its
    record, if it has one, until the claim is recorded."""
    cur.execute(
        "SELECT source_etag, requested_by, status, job_run_id FROM runs WHERE run_id = %s"
        " FOR UPDATE",
        (run_id,),
    )
    recorded, requested_by, status, holder = cur.fetchone() or (
        None,
        RequestedBy.MANUAL,
        None,
        None,
    )
    if status in FINISHED:
        raise AlreadyFinished(run_id, status)
    if status == RunStatus.RUNNING and not _same_job_run(holder, job_run_id):
        raise AlreadyRunning(run_id, holder)
    if recorded and source.etag and recorded != source.etag:
        raise ObjectChanged(recorded, source.etag)
    if requested_by == RequestedBy.EVENT and source.etag:
        cur.execute(
            f"SELECT run_id FROM runs WHERE {sql.SAME_SOURCE_CLAIMING} AND source_etag = %s"  # noqa: S608
            " AND requested_by = %s AND run_id <> %s",
            (
                source.bucket,
                source.key,
                sql.countries(country_keys),
                source.etag,
                RequestedBy.EVENT,
                run_id,
            ),
        )
        other = cur.fetchone()
        if other:
            raise AlreadyProcessed(other[0])


def renew_lease(conn: Connection, run_id: str, job_run_id: str | None = None) -> bool:
    """The job's heartbeat: renew a running run's lease while it holds it. ``False``, and the
    run recorded failed for good, once the lease ran out (or the run finished, or another job
    run holds it): the fence the job must obey."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET heartbeat_at = now() WHERE run_id = %s AND status = %s"
            " AND NOT run_abandoned(runs) AND (%s::text IS NULL OR job_run_id = %s) RETURNING 1",
            (run_id, RunStatus.RUNNING, job_run_id, job_run_id),
        )
        if cur.fetchone() is not None:
            return True
        reaped = sql.fail(cur, f"run_id = %s AND {_ABANDONED}", (run_id,))
    if reaped:
        metrics.run_failed(run_id, "abandoned")
    return False


def fail_run(conn: Connection, run_id: str, error: str) -> bool:
    """Record a run's failure, as its job saw it; nothing it computed is published. A run that
    already finished keeps its outcome, and one that lost its lease says so (the error it was
    shown with); ``False`` when nothing was left to record."""
    with conn, conn.cursor() as cur:
        failed = sql.fail(cur, "run_id = %s AND status = ANY(%s)", (run_id, list(LIVE)), error)
    if failed:
        metrics.run_failed(run_id, "job")
    return bool(failed)


def fail_unfinished(
    conn: Connection, run_id: str, error: str, job_run_id: str | None = None
) -> bool:
    """Fail a run its job left unfinished (the job process ended without recording an outcome);
    ``False`` when the run had already recorded one, or another job run holds it."""
    with conn, conn.cursor() as cur:
        failed = sql.fail(
            cur,
            "run_id = %s AND status = ANY(%s)"
            " AND (%s::text IS NULL OR job_run_id IS NULL OR job_run_id = %s)",
            (run_id, list(LIVE), job_run_id, job_run_id),
            error,
        )
    if failed:
        metrics.run_failed(run_id, "job ended")
    return bool(failed)


def fail_job_run(conn: Connection, job_run_id: str, error: str) -> str | None:
    """Fail the unfinished run that job run ``job_run_id`` executes; the run's id, or ``None``
    when no unfinished run has it (it recorded its outcome, or is not ours)."""
    with conn, conn.cursor() as cur:
        failed = sql.fail(
            cur, "job_run_id = %s AND status = ANY(%s)", (job_run_id, list(WITH_JOB)), error
        )
    if failed:
        metrics.run_failed(failed[0], "job run ended")
    return failed[0] if failed else None


def ended(conn: Connection, job_run_id: str) -> tuple[str, str, float | None] | None:
    """The finished run that job run ``job_run_id`` executed: its id, status and seconds from
    start to end (``None`` when it never started); ``None`` while it is unfinished or unknown."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, run_status(runs), extract(epoch FROM finished_at - started_at)::float"  # noqa: S608 - constant fragments
            f" FROM runs WHERE job_run_id = %s AND run_status(runs) IN {sql_list(FINISHED)}",
            (job_run_id,),
        )
        found: tuple[str, str, float | None] | None = cur.fetchone()
        return found
