"""Statistics, selections and their usage from the collected tally: plain Python over its rows.

The tally (:func:`glue_jobs.transforms.tally`) arrives ranked and bounded: per country, segment
name and segment, the amounts by their position (1 the most used, a tie to the lower amount) up
to a limit and one "other" bucket, and per country the rejected rows by reason. What is left to
do is reading it: the first position is the selection, the second its runner-up, their sum the
rows it was chosen from.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib import rules
from chalicelib.runs import AmountUsage, Choice, CountryStats, Fallback, RunResult, Selection

#: A choice's ranked usage: the most used amount, its rows, the rows it was chosen from, the
#: runner-up amount and its rows (``None`` and 0 when one amount was used).
Ranked = tuple[float, int, int, float | None, int]


def ranked(usage: list[AmountUsage]) -> Ranked:
    """A choice's winner and runner-up from its usage, in position order."""
    winner, *rest = usage
    second = rest[0] if rest else None
    assert winner.voucher_amount is not None  # positions 1 and 2 are amounts (USAGE_TOP_AMOUNTS)
    return (
        winner.voucher_amount,
        winner.voucher_rows,
        sum(u.voucher_rows for u in usage),
        None if second is None else second.voucher_amount,
        0 if second is None else second.voucher_rows,
    )


def result_from_tally(
    tallied: Iterable[Mapping[str, Any]],
    rows_read: int,
    min_segment_rows: int = rules.MIN_SEGMENT_ROWS,
) -> RunResult:
    """Per-country statistics, the selection per segment and the country fallbacks, each with
    its runner-up and usage; ``min_segment_rows`` is the run's rule setting, published with it."""
    names: dict[str, str] = {}
    rejected: dict[str, Counter[str]] = defaultdict(Counter)
    usage: dict[Choice, list[AmountUsage]] = defaultdict(list)
    for row in tallied:
        key = row["country_key"]
        names[key] = row["country"]
        if row["reason"] is not None:
            rejected[key][row["reason"]] += row["rows"]
            continue
        usage[(key, row["segment_name"], row["segment"])].append(
            AmountUsage(
                key,
                row["segment_name"],
                row["segment"],
                row["position"],
                row["voucher_amount"],
                row["rows"],
                row["amounts"],
            )
        )
    ordered = sorted(usage.items(), key=_order)
    for _, bars in ordered:
        bars.sort(key=lambda u: u.position)
    kept: Counter[str] = Counter()  # country -> its kept rows (its fallback's)
    # (country, segment name) -> kept rows in one of its segments
    segmented: Counter[tuple[str, str]] = Counter()
    selections, fallbacks = [], []
    for (key, name, segment), bars in ordered:
        choice = ranked(bars)
        if name is None or segment is None:
            kept[key] = choice[2]
            fallbacks.append(Fallback(key, *choice))
        else:
            segmented[(key, name)] += choice[2]
            selections.append(Selection(key, name, segment, *choice))

    countries = [
        CountryStats(
            country_key=key,
            country=names[key],
            rows_in=kept[key] + sum(rejected[key].values()),
            rows_kept=kept[key],
            rejected_by_reason={code: rejected[key][code] for code in rules.REASON_CODES},
            # Each kept row is in at most one segment of a rule: the others are in none.
            unsegmented={r.name: kept[key] - segmented[(key, r.name)] for r in rules.SEGMENT_RULES},
        )
        for key in sorted(names)
    ]
    return RunResult(
        rows_read,
        rows_read - sum(c.rows_in for c in countries),
        countries,
        selections,
        fallbacks,
        min_segment_rows=min_segment_rows,
        usage=[u for _, bars in ordered for u in bars],
    )


def _order(item: tuple[Choice, list[AmountUsage]]) -> tuple[str, str, str]:
    """Choices by country, segment name and segment (a fallback first: no name sorts low)."""
    (key, name, segment), _ = item
    return (key, name or "", segment or "")
