"""The SPEC's sample request, and published runs for the API's tests and benchmark, written with
the pipeline's ``start_run`` and ``publish_run``.

``FIRST`` publishes Peru (every segment has history), Latvia (``14-37`` and ``180+`` have none,
one amount is not whole) and China. ``SECOND`` later publishes Peru alone with other amounts, so
Latvia and China keep being served from ``FIRST``. Amounts differ per segment, so an answer's
amount tells which segment (or fallback) it came from.
"""

from __future__ import annotations

from chalicelib.rules import REASON_CODES, SEGMENT_RULES, SegmentRule
from chalicelib.runs import (
    USAGE_TOP_AMOUNTS,
    AmountUsage,
    CountryStats,
    Fallback,
    RunResult,
    Selection,
    Source,
    publish_run,
    start_run,
)

#: The SPEC's sample ``POST /voucher`` body (Peru, recency 180+: 2640 in the real history).
SAMPLE = {
    "customer_id": 123,
    "country_code": "Peru",
    "last_order_ts": "2018-05-03 00:00:00",
    "first_order_ts": "2017-05-03 00:00:00",
    "total_orders": 15,
    "segment_name": "recency_segment",
}

FIRST_RUN = "run-2026-11-01"
SECOND_RUN = "run-2026-11-20"

PERU = {
    ("frequent_segment", "0-4"): 1100.0,
    ("frequent_segment", "5-13"): 1760.0,
    ("frequent_segment", "14-37"): 2200.0,
    ("recency_segment", "30-60"): 3300.0,
    ("recency_segment", "61-90"): 4400.0,
    ("recency_segment", "91-120"): 5500.0,
    ("recency_segment", "121-180"): 6600.0,
    ("recency_segment", "180+"): 2640.0,
}
PERU_FALLBACK = 2640.0
PERU_SECOND = {key: amount + 1 for key, amount in PERU.items()}
PERU_SECOND_FALLBACK = 2641.0

LATVIA = {
    ("frequent_segment", "0-4"): 5.0,
    ("frequent_segment", "5-13"): 7.5,
    ("recency_segment", "30-60"): 15.0,
    ("recency_segment", "61-90"): 20.0,
    ("recency_segment", "91-120"): 25.0,
    ("recency_segment", "121-180"): 30.0,
}
LATVIA_FALLBACK = 10.0

CHINA = {key: 300.0 + i for i, key in enumerate(PERU)}
CHINA_FALLBACK = 300.0


def _country(key: str, name: str, amounts: dict, fallback: float, rows_in: int):
    rejected = {code: i + 1 for i, code in enumerate(REASON_CODES)}
    kept = rows_in - sum(rejected.values())
    stats = CountryStats(
        key, name, rows_in, kept, rejected, {"frequent_segment": 3, "recency_segment": 2}
    )
    selections = [
        Selection(key, segment_name, segment, amount, 10 + i, 40 + i)
        for i, ((segment_name, segment), amount) in enumerate(amounts.items())
    ]
    return stats, selections, Fallback(key, fallback, 100, kept)


def run_result(*countries: tuple) -> RunResult:
    """A RunResult from ``(key, name, amounts, fallback, rows_in)`` tuples."""
    result = RunResult(rows_read=0, rows_out_of_scope=7)
    for country in countries:
        stats, selections, fallback = _country(*country)
        result.countries.append(stats)
        result.selections.extend(selections)
        result.fallbacks.append(fallback)
        result.rows_read += stats.rows_in
    result.rows_read += result.rows_out_of_scope
    return result


FIRST = run_result(
    ("peru", "Peru", PERU, PERU_FALLBACK, 5000),
    ("latvia", "Latvia", LATVIA, LATVIA_FALLBACK, 800),
    ("china", "China", CHINA, CHINA_FALLBACK, 1200),
)
SECOND = run_result(("peru", "Peru", PERU_SECOND, PERU_SECOND_FALLBACK, 5100))


def _usage(name: str | None, segment: str | None, amounts: list, other=None) -> list:
    """Peru's usage rows of one choice: ``amounts`` as (amount, rows) by position, then
    ``other`` as (rows, amounts) past the limit."""
    usage = [
        AmountUsage("peru", name, segment, i + 1, amount, rows)
        for i, (amount, rows) in enumerate(amounts)
    ]
    if other:
        usage.append(AmountUsage("peru", name, segment, len(amounts) + 1, None, *other))
    return usage


def with_usage() -> RunResult:
    """Peru with the usage behind its fallback and its segment 180+: 2640 over 4400, then more
    amounts than ``USAGE_TOP_AMOUNTS`` names, the last two as the "other" bucket."""
    result = run_result(("peru", "Peru", PERU, PERU_FALLBACK, 5000))
    result.selections[-1] = Selection("peru", "recency_segment", "180+", 2640.0, 30, 60, 4400.0, 20)
    kept = result.countries[0].rows_kept
    result.fallbacks = [Fallback("peru", 2640.0, kept - 979, kept, 4400.0, 979)]
    many = [(2640.0, 30), (4400.0, 20)] + [(100.0 + i, 1) for i in range(USAGE_TOP_AMOUNTS - 2)]
    result.usage = _usage("recency_segment", "180+", many, other=(2, 2)) + _usage(
        None, None, [(2640.0, kept - 979), (4400.0, 979)]
    )
    return result


def one_amount_run(run_id: str, amount: float) -> tuple[str, RunResult]:
    """Peru, Latvia and China with every selection and fallback at ``amount``."""
    countries = [
        (key, key.title(), dict.fromkeys(PERU, amount), amount, 1000)
        for key in ("peru", "latvia", "china")
    ]
    return run_id, run_result(*countries)


def publish(
    conn, run_id: str, result: RunResult, rules: tuple[SegmentRule, ...] = SEGMENT_RULES
) -> None:
    """Record and publish a run as the pipeline does."""
    keys = tuple(c.country_key for c in result.countries)
    start_run(
        conn, run_id, Source("voucher-raw", f"incoming/{run_id}.parquet", f"etag-{run_id}"), keys
    )
    publish_run(conn, run_id, result, rules)
