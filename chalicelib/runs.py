"""Run records, their leases, and the atomic publish of a run's results.

A run goes ``waiting`` (a dataset folder until its marker or a quiet period) -> ``queued`` (by the
upload handler) -> ``running`` (the job) -> ``succeeded`` | ``failed``. A run started by hand
(``requested_by = 'manual'``) is inserted as it starts and is never deduplicated; event runs are
once per object. A live run holds a lease that its job's heartbeat renews: past it, the run counts
as failed (``abandoned``) for every reader, and the next writer that meets it records that, so a
dead job never blocks its object. A run finishes in one transaction that writes its statistics,
the segment rules, the selections and fallbacks, then points ``published_country`` at it; a
failed run only records its error, so whatever was published before keeps serving.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from psycopg2.extras import execute_values

from chalicelib import metrics
from chalicelib.rules import MIN_SEGMENT_ROWS, SEGMENT_RULES, SegmentRule, rules_to_rows

#: Tables holding a run's results, keyed by run_id (names are constants, never input).
RESULT_TABLES = (
    "run_country_stats",
    "segment_rules",
    "voucher_selection",
    "country_fallback",
    "selection_changes",
)


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
    """A run asked to publish is no longer ``running``: its lease ran out and it was recorded as
    abandoned (or failed) meanwhile, so its object may already have run again."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} is {status}, not running: its result is not published")


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


def _reap(cur, bucket: str | None, key: str) -> None:
    """Record the abandoned runs of a source as failed, so that it can run again."""
    cur.execute(
        "UPDATE runs SET status = 'failed', finished_at = now(), error = run_abandoned_error(runs)"
        " WHERE source_bucket IS NOT DISTINCT FROM %s AND source_key = %s AND run_abandoned(runs)"
        " RETURNING run_id",
        (bucket, key),
    )
    for (run_id,) in cur.fetchall():
        metrics.run_failed(run_id, "abandoned")


def _insert(
    cur,
    run_id: str,
    source: Source,
    country_keys,
    status: str,
    error: str | None = None,
    guard: str = "",
    guard_params: tuple = (),
) -> bool:
    """Insert an event run's record with a fresh lease (``guard``: a further ``WHERE``
    condition); whether it was inserted."""
    cur.execute(
        "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,"
        " source_objects, countries, status, error, finished_at, heartbeat_at, lease_seconds)"
        " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        "        CASE WHEN %s = 'failed' THEN now() END, now(), %s"
        f" WHERE TRUE {guard} ON CONFLICT DO NOTHING RETURNING run_id",
        (
            run_id,
            *_source_columns(source),
            _countries(country_keys),
            status,
            error,
            status,
            lease_seconds(),
            *guard_params,
        ),
    )
    return cur.fetchone() is not None


def queue_run(
    conn, run_id: str, source: Source, country_keys: tuple[str, ...] | None
) -> str | None:
    """Record a queued run for ``source``; ``None`` when a live or succeeded run already has it,
    or has a newer object at the same key (a late or replayed event of an overwritten version)."""
    with conn, conn.cursor() as cur:
        _reap(cur, source.bucket, source.key)
        newer = (
            f" AND NOT EXISTS (SELECT FROM runs WHERE {_SAME_SOURCE}"
            "   AND status IN ('queued', 'running', 'succeeded') AND source_modified_at > %s)"
        )
        queued = _insert(
            cur,
            run_id,
            source,
            country_keys,
            "queued",
            guard=newer,
            guard_params=(source.bucket, source.key, _countries(country_keys), source.modified_at),
        )
        return run_id if queued else None


def wait_for_dataset(
    conn, run_id: str, source: Source, country_keys: tuple[str, ...] | None, quiet_s: int
) -> tuple[str, datetime]:
    """Record that a part of a dataset folder arrived: its ``waiting`` run (made on its first
    part) and when the folder last had a new object. Returns ``(run_id, last_seen)``."""
    with conn, conn.cursor() as cur:
        _reap(cur, source.bucket, source.key)
        cur.execute(
            "INSERT INTO runs (run_id, source_bucket, source_key, countries, status, heartbeat_at,"
            " lease_seconds) VALUES (%s, %s, %s, %s, 'waiting', now(), %s)"
            " ON CONFLICT (source_bucket, source_key, coalesce(countries, '{}'))"
            "   WHERE status = 'waiting'"
            " DO UPDATE SET heartbeat_at = now() RETURNING run_id, heartbeat_at",
            (
                run_id,
                source.bucket,
                source.key,
                _countries(country_keys),
                quiet_s + lease_seconds(),
            ),
        )
        found, seen = cur.fetchone()
        return found, seen


def dataset_waiting(
    conn, bucket: str, prefix: str, country_keys: tuple[str, ...] | None
) -> tuple[datetime, float] | None:
    """When a dataset folder with a waiting run last had a new object, and the seconds since."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float FROM runs"  # noqa: S608
            f" WHERE {_SAME_SOURCE} AND status = 'waiting'",
            (bucket, prefix, _countries(country_keys)),
        )
        return cur.fetchone()


def queue_dataset_run(conn, source: Source, country_keys: tuple[str, ...] | None) -> str | None:
    """Queue the run of a described dataset folder: its waiting run moves on (or a new run is
    queued); ``None``, and no waiting run left, when a run of the same objects exists."""
    same = (source.bucket, source.key, _countries(country_keys))
    with conn, conn.cursor() as cur:
        _reap(cur, source.bucket, source.key)
        cur.execute(
            f"SELECT FROM runs WHERE {_SAME_SOURCE} AND source_etag = %s"
            " AND requested_by = 'event' AND status IN ('queued', 'running', 'succeeded')",
            (*same, source.etag),
        )
        if cur.fetchone() is not None:  # a repeated event, or a part that changed nothing
            cur.execute(f"DELETE FROM runs WHERE {_SAME_SOURCE} AND status = 'waiting'", same)  # noqa: S608
            return None
        cur.execute(
            "UPDATE runs SET status = 'queued', source_etag = %s, source_modified_at = %s,"  # noqa: S608
            " source_objects = %s, heartbeat_at = now(), lease_seconds = %s"
            f" WHERE {_SAME_SOURCE} AND status = 'waiting' RETURNING run_id",
            (source.etag, source.modified_at, source.objects, lease_seconds(), *same),
        )
        waiting = cur.fetchone()
        if waiting:
            return waiting[0]
        run_id = new_run_id()
        return run_id if _insert(cur, run_id, source, country_keys, "queued") else None


def record_failed(
    conn, run_id: str, source: Source, country_keys: tuple[str, ...] | None, error: str
) -> str | None:
    """Record a run that failed before any job (an upload that is not parquet); ``None`` when
    this very upload (same object and event time: a repeated event) is already recorded."""
    same_upload = (
        f" AND NOT EXISTS (SELECT FROM runs WHERE {_SAME_SOURCE}"  # noqa: S608 - constant fragments
        "   AND source_etag IS NOT DISTINCT FROM %s AND source_modified_at IS NOT DISTINCT FROM %s)"
    )
    params = (source.bucket, source.key, _countries(country_keys), source.etag, source.modified_at)
    with conn, conn.cursor() as cur:
        if not _insert(
            cur,
            run_id,
            source,
            country_keys,
            "failed",
            error=error,
            guard=same_upload,
            guard_params=params,
        ):
            return None
    metrics.run_failed(run_id, "input")
    return run_id


def set_job_run(conn, run_id: str, job_run_id: str) -> None:
    """Record which job run executes the run (Glue's JobRunId, or ``pid <n>`` locally)."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE runs SET job_run_id = %s WHERE run_id = %s", (job_run_id, run_id))


def start_run(
    conn,
    run_id: str,
    source: Source,
    country_keys: tuple[str, ...] | None,
    lease_s: int | None = None,
) -> None:
    """Record the run as running (moving its queued record on, or inserting it as a run asked
    for by hand), with a fresh lease of ``lease_s`` seconds.

    Raises :class:`AlreadyProcessed` when the run came from an event and another live or
    succeeded event run has the same object, and :class:`ObjectChanged` when the object is not
    the version this run was queued (or first started) for: a run never reads another version
    than the one it names.
    """
    with conn, conn.cursor() as cur:
        _reap(cur, source.bucket, source.key)
        cur.execute("SELECT source_etag, requested_by FROM runs WHERE run_id = %s", (run_id,))
        recorded, requested_by = cur.fetchone() or (None, "manual")
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
                              heartbeat_at, lease_seconds)
            VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', 'manual', now(), now(), %s)
            ON CONFLICT (run_id) DO UPDATE
               SET status = 'running', started_at = now(), countries = EXCLUDED.countries,
                   source_etag = COALESCE(runs.source_etag, EXCLUDED.source_etag),
                   source_modified_at = COALESCE(runs.source_modified_at,
                                                 EXCLUDED.source_modified_at),
                   source_objects = EXCLUDED.source_objects,
                   heartbeat_at = now(), lease_seconds = EXCLUDED.lease_seconds,
                   error = NULL, finished_at = NULL
            """,
            (
                run_id,
                *_source_columns(source),
                _countries(country_keys),
                lease_s or lease_seconds(),
            ),
        )


def renew_lease(conn, run_id: str) -> bool:
    """The job's heartbeat: renew a running run's lease; ``False`` when it is no longer running
    (its lease ran out and it was recorded as abandoned, or it was failed)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET heartbeat_at = now() WHERE run_id = %s AND status = 'running'"
            " RETURNING 1",
            (run_id,),
        )
        return cur.fetchone() is not None


def fail_run(conn, run_id: str, error: str) -> None:
    """Record a run's failure, as its job saw it; nothing it computed is published."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(), error = %s"
            " WHERE run_id = %s AND status <> 'succeeded'",
            (error, run_id),
        )
    metrics.run_failed(run_id, "job")


def fail_unfinished(conn, run_id: str, error: str) -> bool:
    """Fail a run its job left unfinished (the job process ended without recording an outcome);
    ``False`` when the run had already recorded one."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(), error = %s"
            " WHERE run_id = %s AND status IN ('waiting', 'queued', 'running') RETURNING 1",
            (error, run_id),
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
            "UPDATE runs SET status = 'failed', finished_at = now(), error = %s"
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
    """Write the run's statistics and results and publish them, all in one transaction.

    A country moves to this run unless the run serving it read a newer object; a run asked for
    by hand publishes in any case. Each country published records the selections that differ
    from the result it replaced (:func:`changes_of`). Rows a previous attempt of the same run
    left are replaced, so a retried run publishes once. Raises :class:`NotRunning` when the run
    is not running (its lease ran out meanwhile). Returns the keys of the countries published.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK,))
        cur.execute("SELECT status FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
        status = (cur.fetchone() or ("unknown",))[0]
        if status != "running":
            raise NotRunning(run_id, status)
        for table in RESULT_TABLES:
            cur.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))  # noqa: S608
        _insert_rows(cur, "run_country_stats", run_id, [_stats_row(c) for c in result.countries])
        _insert_rows(cur, "segment_rules", run_id, rules_to_rows(rules))
        _insert_rows(cur, "voucher_selection", run_id, [asdict(s) for s in result.selections])
        _insert_rows(cur, "country_fallback", run_id, [asdict(f) for f in result.fallbacks])
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
