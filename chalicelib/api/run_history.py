"""Run history for ``GET /runs`` and ``GET /runs/{run_id}``: read from the database on request
(unlike the published result, it is not cached: a run's status moves while it is watched).

A live run whose lease ran out is shown as what it is, ``failed`` and why (the schema's
``run_status`` and ``run_error``), even before a writer records it so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chalicelib.api.errors import ApiError, bad_request, not_found
from chalicelib.api.request import parse_names
from chalicelib.api.responses import amount_or_none
from chalicelib.db import Connection
from chalicelib.runs import RUN_STATUSES, SelectionChange, changes_of
from chalicelib.runs.status import LIVE, sql_list

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: ``limit``: a whole number from 1 to ``MAX_LIMIT`` in ASCII digits (the OpenAPI document's).
LIMIT_PATTERN = r"^0*(?:[1-9][0-9]?|100)$"
_LIMIT = re.compile(LIMIT_PATTERN)

_RUNS_SQL = f"""
SELECT r.run_id, run_status(r), r.requested_by,
       r.source_bucket, r.source_key, r.source_etag, r.source_objects, r.countries, r.job_run_id,
       r.created_at, r.started_at, r.finished_at,
       CASE WHEN r.status IN {sql_list(LIVE)} AND NOT run_abandoned(r)
            THEN round(extract(epoch FROM now() - r.heartbeat_at), 1)::float END,
       r.lease_seconds,
       CASE WHEN r.status IN {sql_list(LIVE)} AND NOT run_abandoned(r)
            THEN r.status_reason END,
       r.start_attempts, r.notes,
       r.rows_read, r.rows_out_of_scope, r.published_countries,
       run_error(r), r.min_segment_rows,
       coalesce((SELECT json_agg(json_build_object(
                    'country_code', s.country, 'rows_in', s.rows_in, 'rows_kept', s.rows_kept,
                    'rows_rejected', s.rows_rejected, 'rejected_by_reason', s.rejected_by_reason,
                    'unsegmented', s.unsegmented) ORDER BY s.country)
                   FROM run_country_stats s WHERE s.run_id = r.run_id), '[]') AS countries_stats
  FROM runs r
"""  # noqa: S608 - the statuses are the enum's constants
_FIELDS = (
    "run_id",
    "status",
    "requested_by",
    "source_bucket",
    "source_key",
    "source_etag",
    "source_objects",
    "countries",
    "job_run_id",
    "created_at",
    "started_at",
    "finished_at",
    "heartbeat_age_seconds",
    "lease_seconds",
    "status_reason",
    "start_attempts",
    "notes",
    "rows_read",
    "rows_out_of_scope",
    "published_countries",
    "error",
    "min_segment_rows",
    "stats",
)


def _run(row: tuple[Any, ...]) -> dict[str, Any]:
    run = dict(zip(_FIELDS, row, strict=True))
    run["source"] = {k: run.pop(f"source_{k}") for k in ("bucket", "key", "etag", "objects")}
    return run


def parse_limit(query: Mapping[str, str] | None) -> int:
    text = (query or {}).get("limit", str(DEFAULT_LIMIT))
    if not _LIMIT.fullmatch(text):
        raise bad_request(
            "invalid_field", f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit"
        )
    return int(text.lstrip("0"))  # the pattern allows any number of zeros: int() would not


def parse_statuses(query: Mapping[str, str] | None) -> frozenset[str]:
    """``status``: the statuses to list, comma-separated (all without it)."""
    text = (query or {}).get("status")
    return frozenset(RUN_STATUSES) if text is None else parse_names(text, RUN_STATUSES, "status")


def latest_runs(
    conn: Connection, limit: int, statuses: frozenset[str] = frozenset(RUN_STATUSES)
) -> list[dict[str, Any]]:
    """The latest runs, newest first, of the given statuses (an abandoned run is ``failed``)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            _RUNS_SQL + " WHERE run_status(r) = ANY(%s)"
            " ORDER BY r.created_at DESC, r.run_id DESC LIMIT %s",
            (sorted(statuses), limit),
        )
        return [_run(row) for row in cur.fetchall()]


def one_run(conn: Connection, run_id: str) -> dict[str, Any]:
    if "\x00" in run_id:  # no run id holds one, and PostgreSQL text cannot even carry it
        raise _unknown_run()
    with conn, conn.cursor() as cur:
        cur.execute(_RUNS_SQL + " WHERE r.run_id = %s", (run_id,))
        row = cur.fetchone()
    if row is None:
        raise _unknown_run()
    return {**_run(row), "changes": [_change(c) for c in changes_of(conn, run_id)]}


def _change(change: SelectionChange) -> dict[str, Any]:
    """A selection the run changed; amounts as answers show them."""
    return {
        "country_key": change.country_key,
        "segment_name": change.segment_name,
        "segment": change.segment,
        "old_voucher_amount": amount_or_none(change.old_amount),
        "new_voucher_amount": amount_or_none(change.new_amount),
        "old_share": change.old_share,
        "new_share": change.new_share,
        "replaced_run_id": change.replaced_run_id,
    }


def _unknown_run() -> ApiError:
    return not_found("unknown_run", "no run has this id; GET /runs lists the latest", "run_id")
