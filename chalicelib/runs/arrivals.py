"""How an uploaded object (or a dataset folder) becomes a run: once per object version.

Event runs are once per object version: a repeated event, or an upload event and the reconciler
meeting on the same object, find the run that accounts for it. A dataset folder's run waits
(``waiting``) until its marker or a quiet period; a run then waits ``queued`` as long as its job
must (the reconciler, ``chalicelib.reconciler``, starts it and says why it waits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib import metrics
from chalicelib.db import Connection, Cursor
from chalicelib.runs import sql
from chalicelib.runs.lifecycle import reap_source
from chalicelib.runs.model import Source, new_run_id
from chalicelib.runs.sql import CountryKeys
from chalicelib.runs.status import CLAIMING, RunStatus, sql_list


def _lock_source(cur: Cursor, source: Source, country_keys: CountryKeys) -> None:
    """Serialise the intake of one source for one set of countries until the transaction ends:
    an upload event and the reconciler may meet on the same object."""
    countries = ",".join(country_keys) if country_keys is not None else "*"
    cur.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"{source.bucket}\n{source.key}\n{countries}",),
    )


def _accounting_run(cur: Cursor, source: Source, country_keys: CountryKeys) -> str | None:
    cur.execute(
        f"SELECT run_id FROM runs WHERE {sql.SAME_SOURCE} AND {sql.ACCOUNTS_FOR} LIMIT 1",  # noqa: S608
        (source.bucket, source.key, sql.countries(country_keys), source.etag, source.modified_at),
    )
    found = cur.fetchone()
    return found[0] if found else None


def accounted_for(conn: Connection, source: Source, country_keys: CountryKeys) -> str | None:
    """The run that accounts for this version of ``source`` (``None``: it needs one)."""
    with conn, conn.cursor() as cur:
        return _accounting_run(cur, source, country_keys)


def accounted_keys(
    conn: Connection, bucket: str, versions: list[Source], country_keys: CountryKeys
) -> set[str]:
    """The keys among ``versions`` (of one bucket) that a run accounts for, or that wait (a
    dataset folder's waiting run): one query."""
    if not versions:
        return set()
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT v.key FROM unnest(%s::text[], %s::text[], %s::timestamptz[])"  # noqa: S608 - constant fragments
            "   AS v(key, etag, modified_at)"
            " JOIN runs r ON r.source_bucket = %s AND r.source_key = v.key"
            "  AND coalesce(r.countries, '{}') = coalesce(%s::text[], '{}')"
            f"  AND r.{sql.EVENT_RUN}"
            f"  AND (r.{sql.WAITING} OR r.source_etag = v.etag"
            f"       AND (r.status IN {sql_list(CLAIMING)}"
            "            OR r.source_modified_at IS NOT DISTINCT FROM v.modified_at))",
            (
                [v.key for v in versions],
                [v.etag for v in versions],
                [v.modified_at for v in versions],
                bucket,
                sql.countries(country_keys),
            ),
        )
        return {row[0] for row in cur.fetchall()}


def _insert(
    cur: Cursor,
    run_id: str,
    source: Source,
    country_keys: CountryKeys,
    status: RunStatus,
    error: str | None = None,
    start_in_s: int | None = None,
    guard: str = "",
    guard_params: tuple[Any, ...] = (),
) -> bool:
    """Insert an event run's record (``guard``: a further ``WHERE`` condition); whether it was
    inserted. A queued run's job is (re)started by the reconciler from ``start_in_s``."""
    cur.execute(
        "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,"
        " source_objects, countries, status, error, finished_at, next_start_at)"
        " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        "        CASE WHEN %s THEN now() END,"
        "        now() + %s * interval '1 second'"
        f" WHERE TRUE {guard} ON CONFLICT DO NOTHING RETURNING run_id",
        (
            run_id,
            *sql.source_columns(source),
            sql.countries(country_keys),
            status,
            error,
            status == RunStatus.FAILED,
            start_in_s,
            *guard_params,
        ),
    )
    return cur.fetchone() is not None


def take_in(
    conn: Connection,
    run_id: str,
    source: Source,
    country_keys: CountryKeys,
    start_in_s: int,
    problem: str | None = None,
) -> str | None:
    """Record the run of one uploaded object version: ``queued`` (its job to be started now, and
    again from ``start_in_s`` by the reconciler until it runs), or ``failed`` saying why
    (``problem``: it is not parquet). ``None`` when a run already accounts for this version (a
    repeated event; an event and the reconciler meeting), or, for a queued run, when a live or
    succeeded run of the same key has a newer object (a late event of an overwritten version)."""
    with conn, conn.cursor() as cur:
        _lock_source(cur, source, country_keys)
        reap_source(cur, source.bucket, source.key)
        if _accounting_run(cur, source, country_keys):
            return None
        if problem:
            recorded = _insert(cur, run_id, source, country_keys, RunStatus.FAILED, error=problem)
        else:
            newer = (
                f" AND NOT EXISTS (SELECT FROM runs WHERE {sql.SAME_SOURCE_CLAIMING}"
                "   AND source_modified_at > %s)"
            )
            recorded = _insert(
                cur,
                run_id,
                source,
                country_keys,
                RunStatus.QUEUED,
                start_in_s=start_in_s,
                guard=newer,
                guard_params=(
                    source.bucket,
                    source.key,
                    sql.countries(country_keys),
                    source.modified_at,
                ),
            )
    if recorded and problem:
        metrics.run_failed(run_id, "input")
    return run_id if recorded else None


@dataclass(frozen=True)
class Waiting:
    """A dataset folder's waiting run: since when it waits, and when an event last reported a
    new object of the folder (both by the database's clock)."""

    run_id: str
    since: datetime
    last_seen: datetime


def wait_for_dataset(
    conn: Connection,
    source: Source,
    country_keys: CountryKeys,
    reason: str,
    seen: datetime | None = None,
) -> Waiting:
    """Record that a dataset folder waits (made on its first object), and why; ``seen``: when
    the newest object was reported (``None``: now, by an event)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_bucket, source_key, countries, status, heartbeat_at,"  # noqa: S608 - constant fragments
            " status_reason) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s)"
            " ON CONFLICT (source_bucket, source_key, coalesce(countries, '{}'))"
            f"   WHERE {sql.WAITING}"
            " DO UPDATE SET heartbeat_at = greatest(runs.heartbeat_at, EXCLUDED.heartbeat_at),"
            "               status_reason = EXCLUDED.status_reason"
            " RETURNING run_id, created_at, heartbeat_at",
            (
                new_run_id(),
                source.bucket,
                source.key,
                sql.countries(country_keys),
                RunStatus.WAITING,
                seen,
                reason,
            ),
        )
        row = cur.fetchone()
        assert row is not None  # an upsert's RETURNING gives its row, inserted or updated
        return Waiting(*row)


def dataset_waiting(
    conn: Connection, bucket: str, prefix: str, country_keys: CountryKeys
) -> Waiting | None:
    """The waiting run of a dataset folder, if it has one."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, created_at, heartbeat_at FROM runs"  # noqa: S608
            f" WHERE {sql.SAME_SOURCE} AND {sql.WAITING}",
            (bucket, prefix, sql.countries(country_keys)),
        )
        found = cur.fetchone()
        return Waiting(*found) if found else None


def take_in_dataset(
    conn: Connection,
    source: Source,
    country_keys: CountryKeys,
    start_in_s: int,
    notes: str | None = None,
    problem: str | None = None,
) -> str | None:
    """Take in a dataset folder found ready (described: its data objects' digest as ETag): its
    waiting run (or a new one) becomes ``queued`` (``failed``, saying why, with a ``problem``).
    ``None``, and no waiting run left, when a run already accounts for the same objects."""
    same = (source.bucket, source.key, sql.countries(country_keys))
    status = RunStatus.FAILED if problem else RunStatus.QUEUED
    with conn, conn.cursor() as cur:
        _lock_source(cur, source, country_keys)
        reap_source(cur, source.bucket, source.key)
        if _accounting_run(cur, source, country_keys):  # a repeat, or a part that changed nothing
            cur.execute(f"DELETE FROM runs WHERE {sql.SAME_SOURCE} AND {sql.WAITING}", same)  # noqa: S608
            return None
        cur.execute(
            "UPDATE runs SET status = %s, source_etag = %s, source_modified_at = %s,"  # noqa: S608
            " source_objects = %s, status_reason = NULL, notes = %s, error = %s,"
            " finished_at = CASE WHEN %s THEN now() END,"
            " next_start_at = now() + %s * interval '1 second'"
            f" WHERE {sql.SAME_SOURCE} AND {sql.WAITING} RETURNING run_id",
            (
                status,
                source.etag,
                source.modified_at,
                source.objects,
                notes,
                problem,
                status == RunStatus.FAILED,
                start_in_s,
                *same,
            ),
        )
        found = cur.fetchone()
        run_id = found[0] if found else new_run_id()
        if not found:
            if not _insert(
                cur, run_id, source, country_keys, status, problem, start_in_s=start_in_s
            ):
                return None
            cur.execute("UPDATE runs SET notes = %s WHERE run_id = %s", (notes, run_id))
    if problem:
        metrics.run_failed(run_id, "input")
    return run_id
