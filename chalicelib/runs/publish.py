"""A run's atomic publish: its statistics, rules, selections and usage, then the countries.

A run finishes in one transaction that writes its statistics, the segment rules, the selections
and fallbacks with the usage behind them, then points ``published_country`` at it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from psycopg2.extras import execute_values

from chalicelib.db import Connection, Cursor
from chalicelib.rules import SEGMENT_RULES, SegmentRule, rules_to_rows
from chalicelib.runs.changes import changes_made
from chalicelib.runs.errors import NotRunning
from chalicelib.runs.model import RESULT_TABLES, CountryStats, RunResult
from chalicelib.runs.status import RequestedBy, RunStatus

#: Publishes are serialised: two runs finishing together cannot interleave.
_PUBLISH_LOCK = 0x56534C50


def serving(conn: Connection, country_keys: list[str]) -> dict[str, str]:
    """Which run serves each of these countries now."""
    with conn, conn.cursor() as cur:
        return _serving(cur, country_keys)


def _serving(cur: Cursor, country_keys: list[str]) -> dict[str, str]:
    cur.execute(
        "SELECT country_key, run_id FROM published_country WHERE country_key = ANY(%s)",
        (list(country_keys),),
    )
    return dict(cur.fetchall())


def _insert_rows(cur: Cursor, table: str, run_id: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of one shape) into ``table``, each with the run's id."""
    if not rows:
        return
    columns = ["run_id", *rows[0]]
    execute_values(
        cur,
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s",  # noqa: S608 - constant names
        [(run_id, *row.values()) for row in rows],
    )


def _stats_row(stats: CountryStats) -> dict[str, Any]:
    return {
        "country_key": stats.country_key,
        "country": stats.country,
        "rows_in": stats.rows_in,
        "rows_kept": stats.rows_kept,
        "rows_rejected": stats.rows_rejected,
        "rejected_by_reason": json.dumps(stats.rejected_by_reason),
        "unsegmented": json.dumps(stats.unsegmented),
    }


def _lock_running(cur: Cursor, run_id: str) -> None:
    """Take the publish lock and the run's record; :class:`NotRunning` unless it runs."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK,))
    cur.execute(
        "SELECT CASE WHEN run_abandoned(runs) THEN 'failed (its lease ran out)' ELSE status END"
        " FROM runs WHERE run_id = %s FOR UPDATE",
        (run_id,),
    )
    status = (cur.fetchone() or ("unknown",))[0]
    if status != RunStatus.RUNNING:
        raise NotRunning(run_id, status)


def _write_results(
    cur: Cursor, run_id: str, result: RunResult, rules: tuple[SegmentRule, ...]
) -> None:
    """The run's results, replacing what a previous attempt of it left."""
    for table in RESULT_TABLES:
        cur.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))  # noqa: S608
    _insert_rows(cur, "run_country_stats", run_id, [_stats_row(c) for c in result.countries])
    _insert_rows(cur, "segment_rules", run_id, rules_to_rows(rules))
    _insert_rows(cur, "voucher_selection", run_id, [asdict(s) for s in result.selections])
    _insert_rows(cur, "country_fallback", run_id, [asdict(f) for f in result.fallbacks])
    _insert_rows(cur, "voucher_usage", run_id, [asdict(u) for u in result.usage])


def _point_countries(cur: Cursor, run_id: str, country_keys: list[str]) -> list[str]:
    """Point each country at the run unless the run serving it read a newer object (a run asked
    for by hand moves it in any case); the keys moved, sorted."""
    if not country_keys:
        return []
    rows = execute_values(
        cur,
        "INSERT INTO published_country AS p (country_key, run_id) VALUES %s"  # noqa: S608 - constant fragments
        " ON CONFLICT (country_key) DO UPDATE"
        " SET run_id = EXCLUDED.run_id, published_at = now()"
        f" WHERE (SELECT requested_by = '{RequestedBy.MANUAL.value}' FROM runs"
        "         WHERE run_id = EXCLUDED.run_id)"
        "    OR (SELECT coalesce(source_modified_at, '-infinity') FROM runs"
        "         WHERE run_id = p.run_id)"
        "    <= (SELECT coalesce(source_modified_at, 'infinity') FROM runs"
        "         WHERE run_id = EXCLUDED.run_id)"
        " RETURNING country_key",
        [(key, run_id) for key in country_keys],
        fetch=True,
    )
    return sorted(row[0] for row in rows)


def publish_run(
    conn: Connection, run_id: str, result: RunResult, rules: tuple[SegmentRule, ...] = SEGMENT_RULES
) -> list[str]:
    """Write the run's statistics and results (the usage behind them included) and publish
    them, all in one transaction.

    A country moves to this run unless the run serving it read a newer object; a run asked for
    by hand publishes in any case. Each country published records the selections that differ
    from the result it replaced (:func:`chalicelib.runs.changes.changes_of`). Rows a previous
    attempt of the same run left are replaced, so a retried run publishes once. Raises
    :class:`NotRunning` when the run is not running (its lease ran out meanwhile: the database's
    fence refuses it too). Returns the keys of the countries published.
    """
    with conn, conn.cursor() as cur:
        _lock_running(cur, run_id)
        _write_results(cur, run_id, result, rules)
        replaced = _serving(cur, result.publishable_keys)
        published = _point_countries(cur, run_id, result.publishable_keys)
        changes = changes_made(cur, result, published, replaced)
        _insert_rows(cur, "selection_changes", run_id, [asdict(c) for c in changes])
        cur.execute(
            "UPDATE runs SET status = %s, finished_at = now(), rows_read = %s,"
            " rows_out_of_scope = %s, published_countries = %s, min_segment_rows = %s,"
            " error = NULL WHERE run_id = %s",
            (
                RunStatus.SUCCEEDED,
                result.rows_read,
                result.rows_out_of_scope,
                published,
                result.min_segment_rows,
                run_id,
            ),
        )
    return published
