"""The opt-in details of ``GET /selection_criteria`` (``?detail=usage,changes``): the usage
behind each choice and how each choice changed over the country's last runs.

Read on request for the runs the answer comes from (results are immutable per run, so they
always match the criteria beside them), not held with the published result: ``POST /voucher``
and the criteria without details never pay for them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.api.request import parse_names
from chalicelib.db import Connection
from chalicelib.runs import AmountUsage, Choice, RunStatus

#: The details a caller may ask for, by name (``?detail=usage,changes``).
DETAILS = ("usage", "changes")

#: How many of a country's last publishing runs ``changes`` looks back over.
RECENT_RUNS = 10


def parse_details(text: str | None) -> frozenset[str]:
    """The details asked for (none without the parameter); 400 for any other value."""
    return frozenset() if text is None else parse_names(text, DETAILS, "detail")


@dataclass(frozen=True)
class RecentRun:
    run_id: str
    finished_at: datetime


@dataclass(frozen=True)
class Change:
    """A choice's amount as one run changed it (``old_amount`` ``None``: it had none)."""

    run_id: str
    changed_at: datetime
    old_amount: float | None
    new_amount: float | None
    old_share: float | None
    new_share: float | None


@dataclass
class Details:
    """What the details say, per choice of the countries asked about."""

    #: Countries whose run recorded its usage (runs published before it was recorded did not).
    recorded: set[str] = field(default_factory=set)
    usage: dict[Choice, list[AmountUsage]] = field(default_factory=lambda: defaultdict(list))
    recent_runs: dict[str, list[RecentRun]] = field(default_factory=lambda: defaultdict(list))
    changes: dict[Choice, list[Change]] = field(default_factory=lambda: defaultdict(list))


_USAGE_SQL = """
SELECT u.country_key, u.segment_name, u.segment, u.position, u.voucher_amount, u.voucher_rows,
       u.amounts
  FROM voucher_usage u
  JOIN unnest(%s::text[], %s::text[]) AS served (country_key, run_id) USING (country_key, run_id)
 ORDER BY u.country_key, u.segment_name, u.segment, u.position
"""

#: Per country, its last runs that published it, up to the one serving it, newest first.
_RECENT_RUNS_SQL = f"""
SELECT country_key, run_id, finished_at FROM (
    SELECT served.country_key, r.run_id, r.finished_at,
           row_number() OVER (PARTITION BY served.country_key
                              ORDER BY r.finished_at DESC, r.run_id DESC) AS n
      FROM unnest(%s::text[], %s::text[]) AS served (country_key, run_id)
      JOIN runs serving ON serving.run_id = served.run_id
      JOIN runs r ON r.status = '{RunStatus.SUCCEEDED.value}'
                 AND served.country_key = ANY(r.published_countries)
                 AND r.finished_at <= serving.finished_at
) recent
 WHERE n <= %s
 ORDER BY country_key, n
"""  # noqa: S608 - the statuses are the enum's constants

_CHANGES_SQL = """
SELECT c.country_key, c.segment_name, c.segment, c.run_id, c.changed_at, c.old_amount,
       c.new_amount, c.old_share, c.new_share
  FROM selection_changes c
  JOIN unnest(%s::text[], %s::text[]) AS recent (country_key, run_id) USING (country_key, run_id)
 ORDER BY c.change_id DESC
"""


def load_details(conn: Connection, served: dict[str, str], details: frozenset[str]) -> Details:
    """The ``details`` of the countries in ``served`` (country_key -> the run serving it)."""
    found = Details()
    keys, run_ids = list(served), list(served.values())
    with conn, conn.cursor() as cur:
        if "usage" in details:
            cur.execute(_USAGE_SQL, (keys, run_ids))
            for row in cur.fetchall():
                usage = AmountUsage(*row)
                found.recorded.add(usage.country_key)
                found.usage[(usage.country_key, usage.segment_name, usage.segment)].append(usage)
        if "changes" in details:
            cur.execute(_RECENT_RUNS_SQL, (keys, run_ids, RECENT_RUNS))
            recent = cur.fetchall()
            for key, run_id, finished_at in recent:
                found.recent_runs[key].append(RecentRun(run_id, finished_at))
            cur.execute(_CHANGES_SQL, ([r[0] for r in recent], [r[1] for r in recent]))
            for key, name, segment, *change in cur.fetchall():
                found.changes[(key, name, segment)].append(Change(*change))
    return found
