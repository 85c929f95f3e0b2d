"""What is published, as the API holds it in memory, and how it is read from PostgreSQL.

Per country, the run ``published_country`` points at: its statistics, the segment rules that run
used (and its ``MIN_SEGMENT_ROWS``), its selections and its fallback with their runner-ups, and
when each selection last changed. Everything is read in one snapshot, so a load sees either
the whole previous publication or the whole new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extras import RealDictCursor

from chalicelib.api.errors import not_found
from chalicelib.db import Connection
from chalicelib.rules import SegmentRule, country_key, rules_from_rows
from chalicelib.runs import CountryStats, Fallback, SegmentKey, Selection, Source
from chalicelib.text import shown

#: Which run serves each country: changes exactly when something new is published.
VERSION_SQL = "SELECT country_key, run_id FROM published_country ORDER BY country_key"

_COUNTRIES_SQL = """
SELECT p.country_key, p.run_id, p.published_at,
       r.source_bucket, r.source_key, r.source_etag, r.started_at, r.finished_at,
       s.country, s.rows_in, s.rows_kept, s.rejected_by_reason, s.unsegmented,
       r.min_segment_rows, f.voucher_amount, f.voucher_rows, f.country_rows,
       f.runner_up_amount, f.runner_up_rows
  FROM published_country p
  JOIN runs r ON r.run_id = p.run_id
  JOIN run_country_stats s ON s.run_id = p.run_id AND s.country_key = p.country_key
  JOIN country_fallback f ON f.run_id = p.run_id AND f.country_key = p.country_key
 ORDER BY p.country_key
"""

_SELECTIONS_SQL = """
SELECT v.country_key, v.segment_name, v.segment, v.voucher_amount, v.voucher_rows, v.segment_rows,
       v.runner_up_amount, v.runner_up_rows
  FROM voucher_selection v
  JOIN published_country p ON p.run_id = v.run_id AND p.country_key = v.country_key
"""

#: Per published country and selection (the fallback: no segment), the last recorded change.
_LAST_CHANGES_SQL = """
SELECT DISTINCT ON (c.country_key, c.segment_name, c.segment)
       c.country_key, c.segment_name, c.segment, c.run_id, c.changed_at, c.old_amount
  FROM selection_changes c
  JOIN published_country p ON p.country_key = c.country_key
 ORDER BY c.country_key, c.segment_name, c.segment, c.change_id DESC
"""

_RULES_SQL = """
SELECT run_id, segment_name, measure, description, position, segment, lower_bound, upper_bound
  FROM segment_rules
 WHERE run_id IN (SELECT run_id FROM published_country)
"""


@dataclass(frozen=True)
class PublishedRun:
    """The run a country's result comes from."""

    run_id: str
    source: Source
    started_at: datetime | None
    finished_at: datetime | None
    published_at: datetime


@dataclass(frozen=True)
class LastChange:
    """When, and by which run, a selection last took its amount (``old_amount`` before it)."""

    run_id: str
    changed_at: datetime
    old_amount: float | None


@dataclass(frozen=True)
class CountryResult:
    """One published country: what its run computed and the rules it used."""

    stats: CountryStats
    run: PublishedRun
    rules: dict[str, SegmentRule]
    selections: dict[tuple[str, str], Selection]
    fallback: Fallback
    min_segment_rows: int
    last_changed: dict[SegmentKey, LastChange]

    @property
    def name(self) -> str:
        return self.stats.country


@dataclass(frozen=True)
class Published:
    """Every published country, keyed by ``country_key``, and when it was loaded."""

    version: tuple[tuple[str, str], ...]
    countries: dict[str, CountryResult]
    loaded_at: datetime

    def country(self, name: str, field: str) -> CountryResult:
        """The result for a country name matched like the pipeline does; 404 when unpublished."""
        found = self.countries.get(country_key(name))
        if found is None:
            names = ", ".join(c.name for c in self.countries.values()) or "none yet"
            raise not_found(
                "country_not_published",
                f"no published result for country {shown(name.strip())};"
                f" published countries: {names}",
                field,
            )
        return found


def load_published(conn: Connection, loaded_at: datetime) -> Published:
    """Read every published country in one transaction (use a REPEATABLE READ session)."""
    with conn, conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute(_COUNTRIES_SQL)
        countries = cur.fetchall()
        cur.execute(_SELECTIONS_SQL)
        selections = [Selection(**row) for row in cur.fetchall()]
        cur.execute(_LAST_CHANGES_SQL)
        changes: dict[str, dict[SegmentKey, LastChange]] = {}
        for row in cur.fetchall():
            changes.setdefault(row["country_key"], {})[(row["segment_name"], row["segment"])] = (
                LastChange(row["run_id"], row["changed_at"], row["old_amount"])
            )
        cur.execute(_RULES_SQL)
        rules_rows_by_run: dict[str, list[dict[str, Any]]] = {}
        for row in cur.fetchall():
            rules_rows_by_run.setdefault(row["run_id"], []).append(row)
    rules_by_run = {
        run_id: {rule.name: rule for rule in rules_from_rows(rows)}
        for run_id, rows in rules_rows_by_run.items()
    }
    return Published(
        version=tuple((row["country_key"], row["run_id"]) for row in countries),
        countries={
            row["country_key"]: _country(
                row, rules_by_run[row["run_id"]], selections, changes.get(row["country_key"], {})
            )
            for row in countries
        },
        loaded_at=loaded_at,
    )


def _country(
    row: dict[str, Any],
    rules: dict[str, SegmentRule],
    selections: list[Selection],
    changes: dict[SegmentKey, LastChange],
) -> CountryResult:
    key = row["country_key"]
    return CountryResult(
        stats=CountryStats(
            country_key=key,
            country=row["country"],
            rows_in=row["rows_in"],
            rows_kept=row["rows_kept"],
            rejected_by_reason=row["rejected_by_reason"],
            unsegmented=row["unsegmented"],
        ),
        run=PublishedRun(
            run_id=row["run_id"],
            source=Source(row["source_bucket"], row["source_key"], row["source_etag"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            published_at=row["published_at"],
        ),
        rules=rules,
        selections={(s.segment_name, s.segment): s for s in selections if s.country_key == key},
        fallback=Fallback(
            key,
            row["voucher_amount"],
            row["voucher_rows"],
            row["country_rows"],
            row["runner_up_amount"],
            row["runner_up_rows"],
        ),
        min_segment_rows=row["min_segment_rows"],
        last_changed=changes,
    )
