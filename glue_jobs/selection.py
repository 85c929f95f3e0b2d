"""Statistics and selections from the collected tally: plain Python over its rows.

The tally (:func:`glue_jobs.transforms.tally`) counts the rows of the job's outputs per country,
amount and segments; what is left is small, so it is reduced here on the driver rather than by
more Spark jobs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from chalicelib import rules
from chalicelib.runs import CountryStats, Fallback, RunResult, Selection

#: Per group: the most used amount, its rows, the group's rows, the runner-up amount and its rows.
Ranked = tuple[float, int, int, float | None, int]


def most_used(counts: Mapping[tuple, int]) -> dict[tuple, Ranked]:
    """Per group, from ``{(*group, amount): rows}``: the amount with the most rows (a tie goes to
    the lower amount), its rows, the rows of the whole group, and the runner-up by the same order
    (``None`` and 0 when the group used one amount)."""
    groups: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    for (*group, amount), rows in counts.items():
        groups[tuple(group)].append((amount, rows))
    ranked = {
        group: sorted(items, key=lambda item: (-item[1], item[0]))
        for group, items in groups.items()
    }
    return {
        group: (*items[0], sum(n for _, n in items), *(items[1] if len(items) > 1 else (None, 0)))
        for group, items in ranked.items()
    }


def result_from_tally(
    tallied: Iterable[Mapping], rows_read: int, min_segment_rows: int = rules.MIN_SEGMENT_ROWS
) -> RunResult:
    """Per-country statistics, the selection per segment and the country fallbacks, each with
    its runner-up; ``min_segment_rows`` is the run's rule setting, published with it."""
    names: dict[str, str] = {}
    rows_in: Counter = Counter()
    kept: Counter = Counter()
    rejected: dict[str, Counter] = defaultdict(Counter)
    unsegmented: dict[str, Counter] = defaultdict(Counter)
    per_segment: Counter = Counter()
    per_country: Counter = Counter()
    for row in tallied:
        key, n, amount = row["country_key"], row["rows"], row["voucher_amount"]
        names[key] = row["country"]
        rows_in[key] += n
        if row["reason"] is not None:
            rejected[key][row["reason"]] += n
            continue
        kept[key] += n
        per_country[(key, amount)] += n
        for rule in rules.SEGMENT_RULES:
            if row[rule.name] is None:
                unsegmented[key][rule.name] += n
            else:
                per_segment[(key, rule.name, row[rule.name], amount)] += n

    countries = [
        CountryStats(
            country_key=key,
            country=names[key],
            rows_in=rows_in[key],
            rows_kept=kept[key],
            rejected_by_reason={code: rejected[key][code] for code in rules.REASON_CODES},
            unsegmented={r.name: unsegmented[key][r.name] for r in rules.SEGMENT_RULES},
        )
        for key in sorted(names)
    ]
    selections = [
        Selection(key, name, segment, *ranked)
        for (key, name, segment), ranked in sorted(most_used(per_segment).items())
    ]
    fallbacks = [
        Fallback(key, *ranked) for (key,), ranked in sorted(most_used(per_country).items())
    ]
    return RunResult(
        rows_read,
        rows_read - sum(rows_in.values()),
        countries,
        selections,
        fallbacks,
        min_segment_rows,
    )
