"""Run records, their leases, and the atomic publish of a run's results.

A run goes ``waiting`` (a dataset folder until its marker or a quiet period) -> ``queued`` (its
job asked for, not yet running) -> ``running`` (the job) -> ``succeeded`` | ``failed``. A run
started by hand (``requested_by = 'manual'``) is inserted as it starts and is never deduplicated;
event runs are once per object. Waiting and queued runs wait as long as they must (the reconciler,
``chalicelib.reconciler``, moves them on and says why they wait). A running run holds a lease that
its job's heartbeat renews: past it, the run is failed (``abandoned``) for every reader and for
good, which the database enforces (``runs_fence``): its job can neither renew the lease nor
publish, and no finished run changes status. A run finishes in one transaction that writes its
statistics, the segment rules, the selections and fallbacks with the usage behind them, then
points ``published_country`` at it; a failed run only records its error, so whatever was
published before keeps serving.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from psycopg2.extras import execute_values

from chalicelib import metrics
from chalicelib.rules import MIN_SEGMENT_ROWS, SEGMENT_RULES, SegmentRule, rules_to_rows

#: A run's statuses, in the order a run goes through them (the ``runs`` table's check).
RUN_STATUSES = ("waiting", "queued", "running", "succeeded", "failed")

#: Tables holding a run's results, keyed by run_id (names are constants, never input).
RESULT_TABLES = (
    "run_country_stats",
    "segment_rules",
    "voucher_selection",
    "country_fallback",
    "voucher_usage",
    "selection_changes",
)

#: How many amounts the usage behind a choice names, most used first; the rest are summed as one
#: "other" bucket. Ten bars and the bucket stay legible in a chart at a phone's width, bound what a
#: run publishes per segment (and what the job brings to its driver) whatever the input holds, and
#: always include the winner and the runner-up (the real history uses 3 to 5 amounts a country).
USAGE_TOP_AMOUNTS = 10


@dataclass(frozen=True)
class Source:
    """Where a run's input came from; ``bucket`` is ``None`` for a local path."""

    bucket: str | None
    key: str
    etag: str | None = None
    modified_at: datetime | None = None
    objects: int | None = None  # 1 for a file; the data objects of a dataset folder


@dataclass(frozen=True)
class CountryStats:
    country_key: str
    country: str
    rows_in: int
    rows_kept: int
    rejected_by_reason: dict[str, int]
    unsegmented: dict[str, int]

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


@dataclass(frozen=True)
class Selection:
    """A segment's most used amount and its runner-up (``None``: one amount only)."""

    country_key: str
    segment_name: str
    segment: str
    voucher_amount: float
    voucher_rows: int
    segment_rows: int
    runner_up_amount: float | None = None
    runner_up_rows: int = 0


@dataclass(frozen=True)
class Fallback:
    """A country's most used amount over all its kept rows, and its runner-up."""

    country_key: str
    voucher_amount: float
    voucher_rows: int
    country_rows: int
    runner_up_amount: float | None = None
    runner_up_rows: int = 0


@dataclass(frozen=True)
class AmountUsage:
    """The kept rows of one voucher amount behind a choice, at its ``position`` (1: the chosen
    amount). ``segment_name`` and ``segment`` are ``None`` for the country's fallback. Past the
    top ``USAGE_TOP_AMOUNTS`` positions, one "other" bucket (``voucher_amount`` ``None``) sums
    the rows of the ``amounts`` it holds."""

    country_key: str
    segment_name: str | None
    segment: str | None
    position: int
    voucher_amount: float | None
    voucher_rows: int
    amounts: int = 1


@dataclass(frozen=True)
class SelectionChange:
    """A selection that differs from the one of the run it replaced (``replaced_run_id``, ``None``
    for a country's first result); ``segment_name``/``segment`` are ``None`` for the fallback, an
    amount is ``None`` where there was no selection."""

    country_key: str
    segment_name: str | None
    segment: str | None
    old_amount: float | None
    new_amount: float | None
    old_share: float | None
    new_share: float | None
    replaced_run_id: str | None


@dataclass
class RunResult:
    rows_read: int
    rows_out_of_scope: int
    countries: list[CountryStats] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)
    min_segment_rows: int = MIN_SEGMENT_ROWS
    #: The usage behind every selection and fallback (none for results made without it).
    usage: list[AmountUsage] = field(default_factory=list)

    @property
    def publishable_keys(self) -> list[str]:
        """Countries this run can publish: those with at least one kept row."""
        return [f.country_key for f in self.fallbacks]


def new_run_id() -> str:
    """A run id that sorts by start time: ``20260101T120000Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


DEFAULT_LEASE_SECONDS = 300


def lease_seconds(env: Mapping[str, str] | None = None) -> int:
    """How long a live run may go without a heartbeat (``RUN_LEASE_SECONDS``, default 300)."""
    value = int((os.environ if env is None else env).get("RUN_LEASE_SECONDS") or 0)
    return value if value > 0 else DEFAULT_LEASE_SECONDS


class AlreadyProcessed(Exception):
    """The object was already processed (or is being processed) for these countries."""

    def __init__(self, run_id: str):
        super().__init__(f"already processed by run {run_id}")
        self.run_id = run_id


class ObjectChanged(Exception):
    """The object was overwritten after its upload event queued this run: the version the run
    was queued for is gone (the newer version's own event runs the key)."""

    def __init__(self, queued_etag: str, etag: str):
        super().__init__(
            f"superseded by a newer upload: the run was queued for ETag {queued_etag}, the object"
            f" now has ETag {etag} (its own upload event runs it)"
        )


class NotRunning(Exception):
    """A run asked to start, renew its lease or publish is not (or no longer) running: it
    finished, or its lease ran out, which fails it for good (the database's ``runs_fence``)."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} is {status}, not running: its result is not published")


class AlreadyFinished(Exception):
    """A job run started for a run that already has its outcome (started twice, or retried
    after the run failed for good): it has nothing to do."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} already {status}")


class AlreadyRunning(Exception):
    """Another job run executes this run: its job was started twice (a start the handler could
    not confirm, started again by the reconciler). The later one leaves it to the first."""

    def __init__(self, run_id: str, job_run_id: str | None):
        super().__init__(f"run {run_id} is already being run by job run {job_run_id}")


def _source_columns(source: Source) -> tuple:
    """``source_bucket``, ``source_key``, ``source_etag``, ``source_modified_at``,
    ``source_objects``: the run record's columns of its source, in that order."""
    return (source.bucket, source.key, source.etag, source.modified_at, source.objects)


def _countries(country_keys: tuple[str, ...] | None) -> list[str] | None:
    return list(country_keys) if country_keys is not None else None


#: The runs of one source for the same countries (a constant fragment: bucket, key, countries).
_SAME_SOURCE = (
    "source_bucket IS NOT DISTINCT FROM %s AND source_key = %s"
    " AND coalesce(countries, '{}') = coalesce(%s::text[], '{}')"
)
#: An event run that accounts for one version of its source (constant: ETag, modified time): a
#: live or succeeded run of the same content, or a failed run of this very upload (same ETag and
#: time). A version it accounts for needs no run; a re-upload of the same bytes after a failure
#: is a new version.
_ACCOUNTS_FOR = (
    "requested_by = 'event' AND source_etag = %s"
    " AND (status IN ('waiting', 'queued', 'running', 'succeeded')"
    "      OR source_modified_at IS NOT DISTINCT FROM %s)"
)


def _reap(cur, bucket: str | None, key: str) -> None:
    """Record the abandoned runs of a source as failed."""
    cur.execute(
        "UPDATE runs SET status = 'failed', finished_at = now(), error = run_abandoned_error(runs)"
        " WHERE source_bucket IS NOT DISTINCT FROM %s AND source_key = %s AND run_abandoned(runs)"
        " RETURNING run_id",
        (bucket, key),
    )
    for (run_id,) in cur.fetchall():
        metrics.run_failed(run_id, "abandoned")


def reap_abandoned(conn) -> list[str]:
    """Record every run whose lease ran out as failed (what every reader already sees)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(),"
            " error = run_abandoned_error(runs)"
            " WHERE status = 'running' AND run_abandoned(runs) RETURNING run_id"
        )
        reaped = [row[0] for row in cur.fetchall()]
    for run_id in reaped:
        metrics.run_failed(run_id, "abandoned")
    return reaped


def _lock_source(cur, source: Source, country_keys: tuple[str, ...] | None) -> None:
    """Serialise the intake of one source for one set of countries until the transaction ends:
    an upload event and the reconciler may meet on the same object."""
    countries = ",".join(country_keys) if country_keys is not None else "*"
    cur.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"{source.bucket}\n{source.key}\n{countries}",),
    )


def _accounting_run(cur, source: Source, country_keys: tuple[str, ...] | None) -> str | None:
    cur.execute(
        f"SELECT run_id FROM runs WHERE {_SAME_SOURCE} AND {_ACCOUNTS_FOR} LIMIT 1",  # noqa: S608
        (source.bucket, source.key, _countries(country_keys), source.etag, source.modified_at),
    )
    found = cur.fetchone()
    return found[0] if found else None


def accounted_for(conn, source: Source, country_keys: tuple[str, ...] | None) -> str | None:
    """The run that accounts for this version of ``source`` (``None``: it needs one)."""
    with conn, conn.cursor() as cur:
        return _accounting_run(cur, source, country_keys)


def accounted_keys(
    conn, bucket: str, versions: list[Source], country_keys: tuple[str, ...] | None
) -> set[str]:
    """The keys among ``versions`` (of one bucket) that a run accounts for, or that wait (a
    dataset folder's waiting run): one query."""
    if not versions:
        return set()
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT v.key FROM unnest(%s::text[], %s::text[], %s::timestamptz[])"
            "   AS v(key, etag, modified_at)"
            " JOIN runs r ON r.source_bucket = %s AND r.source_key = v.key"
            "  AND coalesce(r.countries, '{}') = coalesce(%s::text[], '{}')"
            "  AND r.requested_by = 'event'"
            "  AND (r.status = 'waiting' OR r.source_etag = v.etag"
            "       AND (r.status IN ('queued', 'running', 'succeeded')"
            "            OR r.source_modified_at IS NOT DISTINCT FROM v.modified_at))",
            (
                [v.key for v in versions],
                [v.etag for v in versions],
                [v.modified_at for v in versions],
                bucket,
                _countries(country_keys),
            ),
        )
        return {row[0] for row in cur.fetchall()}


def _insert(
    cur,
    run_id: str,
    source: Source,
    country_keys,
    status: str,
    error: str | None = None,
    start_in_s: int | None = None,
    guard: str = "",
    guard_params: tuple = (),
) -> bool:
    """Insert an event run's record (``guard``: a further ``WHERE`` condition); whether it was
    inserted. A queued run's job is (re)started by the reconciler from ``start_in_s``."""
    cur.execute(
        "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,"
        " source_objects, countries, status, error, finished_at, next_start_at)"
        " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        "        CASE WHEN %s = 'failed' THEN now() END,"
        "        now() + %s * interval '1 second'"
        f" WHERE TRUE {guard} ON CONFLICT DO NOTHING RETURNING run_id",
        (
            run_id,
            *_source_columns(source),
            _countries(country_keys),
            status,
            error,
            status,
            start_in_s,
            *guard_params,
        ),
    )
    return cur.fetchone() is not None


def take_in(
    conn,
    run_id: str,
    source: Source,
    country_keys: tuple[str, ...] | None,
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
        _reap(cur, source.bucket, source.key)
        if _accounting_run(cur, source, country_keys):
            return None
        if problem:
            recorded = _insert(cur, run_id, source, country_keys, "failed", error=problem)
        else:
            newer = (
                f" AND NOT EXISTS (SELECT FROM runs WHERE {_SAME_SOURCE}"
                "   AND status IN ('queued', 'running', 'succeeded') AND source_modified_at > %s)"
            )
            recorded = _insert(
                cur,
                run_id,
                source,
                country_keys,
                "queued",
                start_in_s=start_in_s,
                guard=newer,
                guard_params=(
                    source.bucket,
                    source.key,
                    _countries(country_keys),
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
    conn,
    source: Source,
    country_keys: tuple[str, ...] | None,
    reason: str,
    seen: datetime | None = None,
) -> Waiting:
    """Record that a dataset folder waits (made on its first object), and why; ``seen``: when
    the newest object was reported (``None``: now, by an event)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_bucket, source_key, countries, status, heartbeat_at,"
            " status_reason) VALUES (%s, %s, %s, %s, 'waiting', coalesce(%s, now()), %s)"
            " ON CONFLICT (source_bucket, source_key, coalesce(countries, '{}'))"
            "   WHERE status = 'waiting'"
            " DO UPDATE SET heartbeat_at = greatest(runs.heartbeat_at, EXCLUDED.heartbeat_at),"
            "               status_reason = EXCLUDED.status_reason"
            " RETURNING run_id, created_at, heartbeat_at",
            (new_run_id(), source.bucket, source.key, _countries(country_keys), seen, reason),
        )
        return Waiting(*cur.fetchone())


def dataset_waiting(
    conn, bucket: str, prefix: str, country_keys: tuple[str, ...] | None
) -> Waiting | None:
    """The waiting run of a dataset folder, if it has one."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, created_at, heartbeat_at FROM runs"  # noqa: S608
            f" WHERE {_SAME_SOURCE} AND status = 'waiting'",
            (bucket, prefix, _countries(country_keys)),
        )
        found = cur.fetchone()
        return Waiting(*found) if found else None


def take_in_dataset(
    conn,
    source: Source,
    country_keys: tuple[str, ...] | None,
    start_in_s: int,
    notes: str | None = None,
    problem: str | None = None,
) -> str | None:
    """Take in a dataset folder found ready (described: its data objects' digest as ETag): its
    waiting run (or a new one) becomes ``queued`` (``failed``, saying why, with a ``problem``).
    ``None``, and no waiting run left, when a run already accounts for the same objects."""
    same = (source.bucket, source.key, _countries(country_keys))
    status = "failed" if problem else "queued"
    with conn, conn.cursor() as cur:
        _lock_source(cur, source, country_keys)
        _reap(cur, source.bucket, source.key)
        if _accounting_run(cur, source, country_keys):  # a repeat, or a part that changed nothing
            cur.execute(f"DELETE FROM runs WHERE {_SAME_SOURCE} AND status = 'waiting'", same)  # noqa: S608
            return None
        cur.execute(
            "UPDATE runs SET status = %s, source_etag = %s, source_modified_at = %s,"  # noqa: S608
            " source_objects = %s, status_reason = NULL, notes = %s, error = %s,"
            " finished_at = CASE WHEN %s = 'failed' THEN now() END,"
            " next_start_at = now() + %s * interval '1 second'"
            f" WHERE {_SAME_SOURCE} AND status = 'waiting' RETURNING run_id",
            (
                status,
                source.etag,
                source.modified_at,
                source.objects,
                notes,
                problem,
                status,
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


@dataclass(frozen=True)
class Unstarted:
    """A queued run whose job the reconciler is to start (again), or to look after."""

    run_id: str
    source: Source
    country_keys: tuple[str, ...] | None
    job_run_id: str | None
    start_attempts: int

    @property
    def uri(self) -> str:
        return f"s3://{self.source.bucket}/{self.source.key}"


def due_to_start(conn, limit: int) -> list[Unstarted]:
    """Queued runs whose job has not started by their time (oldest first, at most ``limit``)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, source_bucket, source_key, source_etag, countries, job_run_id,"
            " start_attempts FROM runs WHERE status = 'queued'"
            " AND coalesce(next_start_at, '-infinity') <= now()"
            " ORDER BY created_at, run_id LIMIT %s",
            (limit,),
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


def waiting_datasets(conn, limit: int) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """``(bucket, folder, country keys)`` of the waiting dataset runs, longest waiting first."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT source_bucket, source_key, countries FROM runs WHERE status = 'waiting'"
            " ORDER BY created_at, run_id LIMIT %s",
            (limit,),
        )
        return [
            (bucket, key, tuple(countries) if countries is not None else None)
            for bucket, key, countries in cur.fetchall()
        ]


def starting(conn, run_id: str, deadline_s: int) -> bool:
    """Record an attempt to start a queued run's job; the reconciler tries again if the run has
    not started within ``deadline_s``. ``False`` when the run is no longer queued."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET start_attempts = start_attempts + 1,"
            " next_start_at = now() + %s * interval '1 second',"
            " status_reason = 'starting its job (attempt ' || (start_attempts + 1) || ')'"
            " WHERE run_id = %s AND status = 'queued' RETURNING 1",
            (deadline_s, run_id),
        )
        return cur.fetchone() is not None


def set_job_run(conn, run_id: str, job_run_id: str, reason: str | None = None) -> None:
    """Record which job run is to execute a queued run (Glue's JobRunId, or ``pid <n>``
    locally), and what it is doing; a running run keeps the job run that holds it."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET job_run_id = %s, status_reason = coalesce(%s, status_reason)"
            " WHERE run_id = %s AND status = 'queued'",
            (job_run_id, reason, run_id),
        )


def start_put_off(conn, run_id: str, reason: str, retry_in_s: int, failed_start: bool) -> int:
    """Say why a queued run's job did not start, and when the reconciler tries again; returns
    the run's failed starts so far (a refusal for capacity is not one)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status_reason = %s, next_start_at = now() + %s * interval '1 second',"
            " start_errors = start_errors + %s WHERE run_id = %s AND status = 'queued'"
            " RETURNING start_errors",
            (reason, retry_in_s, int(failed_start), run_id),
        )
        found = cur.fetchone()
        return found[0] if found else 0


def _same_job_run(holder: str | None, job_run_id: str | None) -> bool:
    """Whether ``job_run_id`` is the job run holding a run, or Glue's retry of it (Glue names a
    retry attempt ``<first attempt's id>_attempt_<n>``)."""
    if holder is None or job_run_id is None:
        return holder == job_run_id or holder is None
    return re.sub(r"_attempt_\d+$", "", job_run_id) == re.sub(r"_attempt_\d+$", "", holder)


def start_run(
    conn,
    run_id: str,
    source: Source,
    country_keys: tuple[str, ...] | None,
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
        _reap(cur, source.bucket, source.key)
        cur.execute(
            "SELECT source_etag, requested_by, status, job_run_id FROM runs WHERE run_id = %s"
            " FOR UPDATE",
            (run_id,),
        )
        recorded, requested_by, status, holder = cur.fetchone() or (None, "manual", None, None)
        if status in ("succeeded", "failed"):
            raise AlreadyFinished(run_id, status)
        if status == "running" and not _same_job_run(holder, job_run_id):
            raise AlreadyRunning(run_id, holder)
        if recorded and source.etag and recorded != source.etag:
            raise ObjectChanged(recorded, source.etag)
        if requested_by == "event" and source.etag:
            cur.execute(
                f"SELECT run_id FROM runs WHERE {_SAME_SOURCE} AND source_etag = %s"  # noqa: S608
                " AND requested_by = 'event' AND status IN ('queued', 'running', 'succeeded')"
                " AND run_id <> %s",
                (source.bucket, source.key, _countries(country_keys), source.etag, run_id),
            )
            other = cur.fetchone()
            if other:
                raise AlreadyProcessed(other[0])
        cur.execute(
            """
            INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,
                              source_objects, countries, status, requested_by, started_at,
                              heartbeat_at, lease_seconds, job_run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', 'manual', now(), now(), %s, %s)
            ON CONFLICT (run_id) DO UPDATE
               SET status = 'running', started_at = now(), countries = EXCLUDED.countries,
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
                *_source_columns(source),
                _countries(country_keys),
                lease_s or lease_seconds(),
                job_run_id,
            ),
        )


def renew_lease(conn, run_id: str, job_run_id: str | None = None) -> bool:
    """The job's heartbeat: renew a running run's lease while it holds it. ``False``, and the
    run recorded failed for good, once the lease ran out (or the run finished, or another job
    run holds it): the fence the job must obey."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET heartbeat_at = now() WHERE run_id = %s AND status = 'running'"
            " AND NOT run_abandoned(runs) AND (%s::text IS NULL OR job_run_id = %s) RETURNING 1",
            (run_id, job_run_id, job_run_id),
        )
        if cur.fetchone() is not None:
            return True
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(),"
            " error = run_abandoned_error(runs) WHERE run_id = %s AND run_abandoned(runs)"
            " RETURNING 1",
            (run_id,),
        )
        reaped = cur.fetchone() is not None
    if reaped:
        metrics.run_failed(run_id, "abandoned")
    return False


def fail_run(conn, run_id: str, error: str) -> bool:
    """Record a run's failure, as its job saw it; nothing it computed is published. A run that
    already finished keeps its outcome, and one that lost its lease says so (the error it was
    shown with); ``False`` when nothing was left to record."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(),"
            " error = CASE WHEN run_abandoned(runs) THEN run_abandoned_error(runs) ELSE %s END"
            " WHERE run_id = %s AND status IN ('waiting', 'queued', 'running') RETURNING 1",
            (error, run_id),
        )
        failed = cur.fetchone() is not None
    if failed:
        metrics.run_failed(run_id, "job")
    return failed


def fail_unfinished(conn, run_id: str, error: str, job_run_id: str | None = None) -> bool:
    """Fail a run its job left unfinished (the job process ended without recording an outcome);
    ``False`` when the run had already recorded one, or another job run holds it."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(),"
            " error = CASE WHEN run_abandoned(runs) THEN run_abandoned_error(runs) ELSE %s END"
            " WHERE run_id = %s AND status IN ('waiting', 'queued', 'running')"
            " AND (%s::text IS NULL OR job_run_id IS NULL OR job_run_id = %s) RETURNING 1",
            (error, run_id, job_run_id, job_run_id),
        )
        failed = cur.fetchone() is not None
    if failed:
        metrics.run_failed(run_id, "job ended")
    return failed


def fail_job_run(conn, job_run_id: str, error: str) -> str | None:
    """Fail the unfinished run that job run ``job_run_id`` executes; the run's id, or ``None``
    when no unfinished run has it (it recorded its outcome, or is not ours)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(),"
            " error = CASE WHEN run_abandoned(runs) THEN run_abandoned_error(runs) ELSE %s END"
            " WHERE job_run_id = %s AND status IN ('queued', 'running') RETURNING run_id",
            (error, job_run_id),
        )
        found = cur.fetchone()
    if found:
        metrics.run_failed(found[0], "job run ended")
    return found[0] if found else None


def ended(conn, job_run_id: str) -> tuple[str, str, float | None] | None:
    """The finished run that job run ``job_run_id`` executed: its id, status and seconds from
    start to end (``None`` when it never started); ``None`` while it is unfinished or unknown."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, run_status(runs), extract(epoch FROM finished_at - started_at)::float"
            " FROM runs WHERE job_run_id = %s AND run_status(runs) IN ('succeeded', 'failed')",
            (job_run_id,),
        )
        return cur.fetchone()


def serving(conn, country_keys: list[str]) -> dict[str, str]:
    """Which run serves each of these countries now."""
    with conn, conn.cursor() as cur:
        return _serving(cur, country_keys)


#: Publishes are serialised: two runs finishing together cannot interleave.
_PUBLISH_LOCK = 0x56534C50


def _insert_rows(cur, table: str, run_id: str, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts of one shape) into ``table``, each with the run's id."""
    if not rows:
        return
    columns = ["run_id", *rows[0]]
    execute_values(
        cur,
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s",  # noqa: S608 - constant names
        [(run_id, *row.values()) for row in rows],
    )


def _stats_row(stats: CountryStats) -> dict:
    return {
        "country_key": stats.country_key,
        "country": stats.country,
        "rows_in": stats.rows_in,
        "rows_kept": stats.rows_kept,
        "rows_rejected": stats.rows_rejected,
        "rejected_by_reason": json.dumps(stats.rejected_by_reason),
        "unsegmented": json.dumps(stats.unsegmented),
    }


def publish_run(
    conn, run_id: str, result: RunResult, rules: tuple[SegmentRule, ...] = SEGMENT_RULES
) -> list[str]:
    """Write the run's statistics and results (the usage behind them included) and publish
    them, all in one transaction.

    A country moves to this run unless the run serving it read a newer object; a run asked for
    by hand publishes in any case. Each country published records the selections that differ
    from the result it replaced (:func:`changes_of`). Rows a previous attempt of the same run
    left are replaced, so a retried run publishes once. Raises :class:`NotRunning` when the run
    is not running (its lease ran out meanwhile: the database's fence refuses it too). Returns
    the keys of the countries published.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK,))
        cur.execute(
            "SELECT CASE WHEN run_abandoned(runs) THEN 'failed (its lease ran out)' ELSE status END"
            " FROM runs WHERE run_id = %s FOR UPDATE",
            (run_id,),
        )
        status = (cur.fetchone() or ("unknown",))[0]
        if status != "running":
            raise NotRunning(run_id, status)
        for table in RESULT_TABLES:
            cur.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))  # noqa: S608
        _insert_rows(cur, "run_country_stats", run_id, [_stats_row(c) for c in result.countries])
        _insert_rows(cur, "segment_rules", run_id, rules_to_rows(rules))
        _insert_rows(cur, "voucher_selection", run_id, [asdict(s) for s in result.selections])
        _insert_rows(cur, "country_fallback", run_id, [asdict(f) for f in result.fallbacks])
        _insert_rows(cur, "voucher_usage", run_id, [asdict(u) for u in result.usage])
        replaced = _serving(cur, result.publishable_keys)
        published = []
        if result.publishable_keys:
            published = sorted(
                row[0]
                for row in execute_values(
                    cur,
                    "INSERT INTO published_country AS p (country_key, run_id) VALUES %s"
                    " ON CONFLICT (country_key) DO UPDATE"
                    " SET run_id = EXCLUDED.run_id, published_at = now()"
                    " WHERE (SELECT requested_by = 'manual' FROM runs"
                    "         WHERE run_id = EXCLUDED.run_id)"
                    "    OR (SELECT coalesce(source_modified_at, '-infinity') FROM runs"
                    "         WHERE run_id = p.run_id)"
                    "    <= (SELECT coalesce(source_modified_at, 'infinity') FROM runs"
                    "         WHERE run_id = EXCLUDED.run_id)"
                    " RETURNING country_key",
                    [(key, run_id) for key in result.publishable_keys],
                    fetch=True,
                )
            )
        changes = [
            change
            for key in published
            for change in _changes(
                key,
                _results_of(cur, replaced.get(key), key),
                _results_in(result, key),
                replaced.get(key),
            )
        ]
        _insert_rows(cur, "selection_changes", run_id, [asdict(c) for c in changes])
        cur.execute(
            "UPDATE runs SET status = 'succeeded', finished_at = now(), rows_read = %s,"
            " rows_out_of_scope = %s, published_countries = %s, min_segment_rows = %s,"
            " error = NULL WHERE run_id = %s",
            (
                result.rows_read,
                result.rows_out_of_scope,
                published,
                result.min_segment_rows,
                run_id,
            ),
        )
    return published


#: A selection's key: (segment_name, segment); the country fallback's (its rows, SQL NULLs).
FALLBACK_KEY = (None, None)
#: A country's result as changes compare it: selection key -> (amount, share).
_Results = dict[tuple[str | None, str | None], tuple[float, float]]


def _serving(cur, country_keys: list[str]) -> dict[str, str]:
    cur.execute(
        "SELECT country_key, run_id FROM published_country WHERE country_key = ANY(%s)",
        (list(country_keys),),
    )
    return dict(cur.fetchall())


def _results_of(cur, run_id: str | None, country_key: str) -> _Results:
    """A published run's selections and fallback for one country (none for no run)."""
    if run_id is None:
        return {}
    cur.execute(
        "SELECT segment_name, segment, voucher_amount, voucher_rows::float / segment_rows"
        "  FROM voucher_selection WHERE run_id = %s AND country_key = %s"
        " UNION ALL SELECT NULL, NULL, voucher_amount, voucher_rows::float / country_rows"
        "  FROM country_fallback WHERE run_id = %s AND country_key = %s",
        (run_id, country_key, run_id, country_key),
    )
    return {(name, segment): (amount, share) for name, segment, amount, share in cur.fetchall()}


def _results_in(result: RunResult, country_key: str) -> _Results:
    found: _Results = {
        (s.segment_name, s.segment): (s.voucher_amount, s.voucher_rows / s.segment_rows)
        for s in result.selections
        if s.country_key == country_key
    }
    for f in result.fallbacks:
        if f.country_key == country_key:
            found[FALLBACK_KEY] = (f.voucher_amount, f.voucher_rows / f.country_rows)
    return found


def _changes(
    country_key: str, old: _Results, new: _Results, replaced_run_id: str | None
) -> list[SelectionChange]:
    """The selections whose amount differs (one that appears or goes included): segments in
    order, then the fallback."""
    changed = []
    for name, segment in sorted(old.keys() | new.keys(), key=lambda k: (k[0] is None, k)):
        (old_amount, old_share), (new_amount, new_share) = (
            old.get((name, segment), (None, None)),
            new.get((name, segment), (None, None)),
        )
        if old_amount != new_amount:
            changed.append(
                SelectionChange(
                    country_key,
                    name,
                    segment,
                    old_amount,
                    new_amount,
                    old_share,
                    new_share,
                    replaced_run_id,
                )
            )
    return changed


def changes_of(conn, run_id: str) -> list[SelectionChange]:
    """What a run changed, per country it published, in the order it was recorded."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT country_key, segment_name, segment, old_amount, new_amount, old_share,"
            " new_share, replaced_run_id FROM selection_changes WHERE run_id = %s"
            " ORDER BY change_id",
            (run_id,),
        )
        return [SelectionChange(*row) for row in cur.fetchall()]
