"""What a run changed: the selections that differ from the result each country had before."""

from __future__ import annotations

from chalicelib.db import Connection, Cursor
from chalicelib.runs.model import RunResult, SelectionChange

#: A selection's key within its country: (segment_name, segment).
SegmentKey = tuple[str | None, str | None]
#: The country fallback's key (its rows, SQL NULLs).
FALLBACK_KEY: SegmentKey = (None, None)
#: A country's result as changes compare it: selection key -> (amount, share).
_Results = dict[SegmentKey, tuple[float, float]]


def _results_of(cur: Cursor, run_id: str | None, country_key: str) -> _Results:
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


def changes_made(
    cur: Cursor, result: RunResult, published: list[str], replaced: dict[str, str]
) -> list[SelectionChange]:
    """What ``result`` changes in each country it ``published``, against the runs it
    ``replaced`` (country key -> run id; a country without one had no result)."""
    return [
        change
        for key in published
        for change in _changes(
            key,
            _results_of(cur, replaced.get(key), key),
            _results_in(result, key),
            replaced.get(key),
        )
    ]


def changes_of(conn: Connection, run_id: str) -> list[SelectionChange]:
    """What a run changed, per country it published, in the order it was recorded."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT country_key, segment_name, segment, old_amount, new_amount, old_share,"
            " new_share, replaced_run_id FROM selection_changes WHERE run_id = %s"
            " ORDER BY change_id",
            (run_id,),
        )
        return [SelectionChange(*row) for row in cur.fetchall()]
