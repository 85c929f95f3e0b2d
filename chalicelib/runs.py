"""Run records and the atomic publish of a run's results.

A run is queued (by the upload handler) or inserted when it starts, and finished in one transaction
that writes its statistics, the segment rules, the selections and fallbacks, then points
``published_country`` at it. A failed run only records its error: whatever was published before
keeps serving.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg2.extras import execute_values

from chalicelib.rules import SEGMENT_RULES, SegmentRule, rules_to_rows

#: Tables holding a run's results, keyed by run_id (names are constants, never input).
RESULT_TABLES = ("run_country_stats", "segment_rules", "voucher_selection", "country_fallback")


@dataclass(frozen=True)
class Source:
    """Where a run's input came from; ``bucket`` is ``None`` for a local path."""

    bucket: str | None
    key: str
    etag: str | None = None
    modified_at: datetime | None = None


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
    country_key: str
    segment_name: str
    segment: str
    voucher_amount: float
    voucher_rows: int
    segment_rows: int


@dataclass(frozen=True)
class Fallback:
    country_key: str
    voucher_amount: float
    voucher_rows: int
    country_rows: int


@dataclass
class RunResult:
    rows_read: int
    rows_out_of_scope: int
    countries: list[CountryStats] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)

    @property
    def publishable_keys(self) -> list[str]:
        """Countries this run can publish: those with at least one kept row."""
        return [f.country_key for f in self.fallbacks]


def new_run_id() -> str:
    """A run id that sorts by start time: ``20260101T120000Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


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


_LIVE_RUN_OF_OBJECT = """
    SELECT run_id FROM runs
     WHERE source_bucket IS NOT DISTINCT FROM %s AND source_key = %s AND source_etag = %s
       AND coalesce(countries, '{}') = coalesce(%s::text[], '{}') AND status <> 'failed'
"""


def _countries(country_keys: tuple[str, ...] | None) -> list[str] | None:
    return list(country_keys) if country_keys is not None else None


def _run_row(run_id: str, source: Source, country_keys: tuple[str, ...] | None) -> tuple:
    """(run_id, source_bucket, source_key, source_etag, source_modified_at, countries)."""
    return (run_id, source.bucket, source.key, source.etag, source.modified_at,
            _countries(country_keys))  # fmt: skip


def queue_run(
    conn, run_id: str, source: Source, country_keys: tuple[str, ...] | None
) -> str | None:
    """Record a queued run for ``source``; ``None`` when a live or succeeded run already has it,
    or has a newer object at the same key (a late or replayed event of an overwritten version)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,"
            " countries, status) SELECT %s, %s, %s, %s, %s, %s, 'queued'"
            " WHERE NOT EXISTS (SELECT FROM runs WHERE source_bucket IS NOT DISTINCT FROM %s"
            "   AND source_key = %s AND coalesce(countries, '{}') = coalesce(%s::text[], '{}')"
            "   AND status <> 'failed' AND source_modified_at > %s)"
            " ON CONFLICT DO NOTHING RETURNING run_id",
            (
                *_run_row(run_id, source, country_keys),
                source.bucket, source.key, _countries(country_keys), source.modified_at,
            ),
        )  # fmt: skip
        return cur.fetchone() and run_id


def start_run(conn, run_id: str, source: Source, country_keys: tuple[str, ...] | None) -> None:
    """Record the run as running (inserting it, or moving its queued record on).

    Raises :class:`AlreadyProcessed` when another live or succeeded run has the same object, and
    :class:`ObjectChanged` when the object is not the version this run was queued (or first
    started) for: a run never reads another version than the one it names.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT source_etag FROM runs WHERE run_id = %s", (run_id,))
        recorded = (cur.fetchone() or (None,))[0]
        if recorded and source.etag and recorded != source.etag:
            raise ObjectChanged(recorded, source.etag)
        cur.execute(
            _LIVE_RUN_OF_OBJECT, (source.bucket, source.key, source.etag, _countries(country_keys))
        )
        other = next((row[0] for row in cur.fetchall() if row[0] != run_id), None)
        if other and source.etag:
            raise AlreadyProcessed(other)
        cur.execute(
            """
            INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,
                              countries, status, started_at)
            VALUES (%s, %s, %s, %s, %s, %s, 'running', now())
            ON CONFLICT (run_id) DO UPDATE
               SET status = 'running', started_at = now(), countries = EXCLUDED.countries,
                   source_etag = COALESCE(runs.source_etag, EXCLUDED.source_etag),
                   source_modified_at = COALESCE(runs.source_modified_at,
                                                 EXCLUDED.source_modified_at),
                   error = NULL, finished_at = NULL
            """,
            _run_row(run_id, source, country_keys),
        )


def fail_run(conn, run_id: str, error: str) -> None:
    """Record a run's failure; nothing it computed is published."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(), error = %s WHERE run_id = %s",
            (error, run_id),
        )


_PUBLISH_LOCK = (
    0x56534C50  # publishes are serialised: two runs finishing together cannot interleave
)


def publish_run(
    conn, run_id: str, result: RunResult, rules: tuple[SegmentRule, ...] = SEGMENT_RULES
) -> list[str]:
    """Write the run's statistics and results and publish them, all in one transaction.

    Rows a previous attempt of the same run left are replaced, so a retried run publishes once.
    Returns the keys of the countries published (see ``published_country``'s rule above).
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK,))
        for table in RESULT_TABLES:
            cur.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))  # noqa: S608
        execute_values(
            cur,
            "INSERT INTO run_country_stats (run_id, country_key, country, rows_in, rows_kept,"
            " rows_rejected, rejected_by_reason, unsegmented) VALUES %s",
            [
                (
                    run_id,
                    s.country_key,
                    s.country,
                    s.rows_in,
                    s.rows_kept,
                    s.rows_rejected,
                    json.dumps(s.rejected_by_reason),
                    json.dumps(s.unsegmented),
                )
                for s in result.countries
            ],
        )
        execute_values(
            cur,
            "INSERT INTO segment_rules (run_id, segment_name, measure, description, position,"
            " segment, lower_bound, upper_bound) VALUES %s",
            [
                (
                    run_id,
                    r["segment_name"],
                    r["measure"],
                    r["description"],
                    r["position"],
                    r["segment"],
                    r["lower_bound"],
                    r["upper_bound"],
                )
                for r in rules_to_rows(rules)
            ],
        )
        if result.selections:
            execute_values(
                cur,
                "INSERT INTO voucher_selection (run_id, country_key, segment_name, segment,"
                " voucher_amount, voucher_rows, segment_rows) VALUES %s",
                [
                    (
                        run_id,
                        s.country_key,
                        s.segment_name,
                        s.segment,
                        s.voucher_amount,
                        s.voucher_rows,
                        s.segment_rows,
                    )
                    for s in result.selections
                ],
            )
        if result.fallbacks:
            execute_values(
                cur,
                "INSERT INTO country_fallback (run_id, country_key, voucher_amount, voucher_rows,"
                " country_rows) VALUES %s",
                [
                    (run_id, f.country_key, f.voucher_amount, f.voucher_rows, f.country_rows)
                    for f in result.fallbacks
                ],
            )
        published = (
            sorted(
                row[0]
                for row in execute_values(
                    cur,
                    # A country moves to this run unless the run it serves read a newer object.
                    "INSERT INTO published_country AS p (country_key, run_id) VALUES %s"
                    " ON CONFLICT (country_key) DO UPDATE"
                    " SET run_id = EXCLUDED.run_id, published_at = now()"
                    " WHERE (SELECT coalesce(source_modified_at, '-infinity') FROM runs"
                    "         WHERE run_id = p.run_id)"
                    "    <= (SELECT coalesce(source_modified_at, 'infinity') FROM runs"
                    "         WHERE run_id = EXCLUDED.run_id)"
                    " RETURNING country_key",
                    [(key, run_id) for key in result.publishable_keys],
                    fetch=True,
                )
            )
            if result.publishable_keys
            else []
        )
        cur.execute(
            "UPDATE runs SET status = 'succeeded', finished_at = now(), rows_read = %s,"
            " rows_out_of_scope = %s, published_countries = %s, error = NULL WHERE run_id = %s",
            (result.rows_read, result.rows_out_of_scope, published, run_id),
        )
    return published
