"""Queued and waiting runs as the reconciler sees them: which to start, and its attempts."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.db import Connection
from chalicelib.runs.model import Source
from chalicelib.runs.sql import CountryKeys
from chalicelib.runs.status import RunStatus


@dataclass(frozen=True)
class Unstarted:
    """A queued run whose job the reconciler is to start (again), or to look after."""

    run_id: str
    source: Source
    country_keys: CountryKeys
    job_run_id: str | None
    start_attempts: int

    @property
    def uri(self) -> str:
        return f"s3://{self.source.bucket}/{self.source.key}"


def due_to_start(conn: Connection, limit: int) -> list[Unstarted]:
    """Queued runs whose job has not started by their time (oldest first, at most ``limit``)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, source_bucket, source_key, source_etag, countries, job_run_id,"
            " start_attempts FROM runs WHERE status = %s"
            " AND coalesce(next_start_at, '-infinity') <= now()"
            " ORDER BY created_at, run_id LIMIT %s",
            (RunStatus.QUEUED, limit),
        )
        return [
            Unstarted(
                run_id,
                Source(bucket, key, etag),
                tuple(countries) if countries is not None else None,
                job_run_id,
                attempts,
            )
            for run_id, bucket, key, etag, countries, job_run_id, attempts in cur.fetchall()
        ]


def waiting_datasets(conn: Connection, limit: int) -> list[tuple[str, str, CountryKeys]]:
    """``(bucket, folder, country keys)`` of the waiting dataset runs, longest waiting first."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT source_bucket, source_key, countries FROM runs WHERE status = %s"
            " ORDER BY created_at, run_id LIMIT %s",
            (RunStatus.WAITING, limit),
        )
        return [
            (bucket, key, tuple(countries) if countries is not None else None)
            for bucket, key, countries in cur.fetchall()
        ]


def starting(conn: Connection, run_id: str, deadline_s: int) -> bool:
    """Record an attempt to start a queued run's job; the reconciler tries again if the run has
    not started within ``deadline_s``. ``False`` when the run is no longer queued."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET start_attempts = start_attempts + 1,"
            " next_start_at = now() + %s * interval '1 second',"
            " status_reason = 'starting its job (attempt ' || (start_attempts + 1) || ')'"
            " WHERE run_id = %s AND status = %s RETURNING 1",
            (deadline_s, run_id, RunStatus.QUEUED),
        )
        return cur.fetchone() is not None


def set_job_run(conn: Connection, run_id: str, job_run_id: str, reason: str | None = None) -> None:
    """Record which job run is to execute a queued run (Glue's JobRunId, or ``pid <n>``
    locally), and what it is doing; a running run keeps the job run that holds it."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET job_run_id = %s, status_reason = coalesce(%s, status_reason)"
            " WHERE run_id = %s AND status = %s",
            (job_run_id, reason, run_id, RunStatus.QUEUED),
        )


def start_put_off(
    conn: Connection, run_id: str, reason: str, retry_in_s: int, failed_start: bool
) -> int:
    """Say why a queued run's job did not start, and when the reconciler tries again; returns
    the run's failed starts so far (a refusal for capacity is not one)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status_reason = %s, next_start_at = now() + %s * interval '1 second',"
            " start_errors = start_errors + %s WHERE run_id = %s AND status = %s"
            " RETURNING start_errors",
            (reason, retry_in_s, int(failed_start), run_id, RunStatus.QUEUED),
        )
        found = cur.fetchone()
        return found[0] if found else 0
