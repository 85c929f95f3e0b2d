"""SQL the run modules share: a source's columns and runs, and recording runs failed."""

from __future__ import annotations

from typing import Any

from chalicelib.db import Cursor
from chalicelib.runs.model import Source
from chalicelib.runs.status import CLAIMING, LIVE, RequestedBy, RunStatus, sql_list

CountryKeys = tuple[str, ...] | None


def source_columns(source: Source) -> tuple[Any, ...]:
    """``source_bucket``, ``source_key``, ``source_etag``, ``source_modified_at``,
    ``source_objects``: the run record's columns of its source, in that order."""
    return (source.bucket, source.key, source.etag, source.modified_at, source.objects)


def countries(country_keys: CountryKeys) -> list[str] | None:
    """The ``countries`` column's value (``None``: every country)."""
    return list(country_keys) if country_keys is not None else None


#: A run an upload's event asked for.
EVENT_RUN = f"requested_by = '{RequestedBy.EVENT.value}'"
#: The runs of one source for the same countries (a constant fragment: bucket, key, countries).
SAME_SOURCE = (
    "source_bucket IS NOT DISTINCT FROM %s AND source_key = %s"
    " AND coalesce(countries, '{}') = coalesce(%s::text[], '{}')"
)
#: An event run that accounts for one version of its source (constant: ETag, modified time): a
#: live or succeeded run of the same content, or a failed run of this very upload (same ETag and
#: time). A version it accounts for needs no run; a re-upload of the same bytes after a failure
#: is a new version.
ACCOUNTS_FOR = (
    f"{EVENT_RUN} AND source_etag = %s"
    f" AND (status IN {sql_list((*LIVE, RunStatus.SUCCEEDED))}"
    "      OR source_modified_at IS NOT DISTINCT FROM %s)"
)
#: A run of the same source and countries that claims a version (constant: as ``SAME_SOURCE``).
SAME_SOURCE_CLAIMING = f"{SAME_SOURCE} AND status IN {sql_list(CLAIMING)}"
#: A run that waits (a dataset folder's, before its marker or a quiet period).
WAITING = f"status = '{RunStatus.WAITING.value}'"


def fail(cur: Cursor, where: str, params: tuple[Any, ...], error: str | None = None) -> list[str]:
    """Record the runs matching ``where`` (a constant condition over ``params``) failed with
    ``error``; a run whose lease ran out keeps the error it is already shown with. Their ids."""
    cur.execute(
        "UPDATE runs SET status = %s, finished_at = now(),"  # noqa: S608 - constant fragments
        " error = CASE WHEN run_abandoned(runs) THEN run_abandoned_error(runs) ELSE %s END"
        f" WHERE {where} RETURNING run_id",
        (RunStatus.FAILED, error, *params),
    )
    return [row[0] for row in cur.fetchall()]
