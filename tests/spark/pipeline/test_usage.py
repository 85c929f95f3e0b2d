"""The usage behind each choice: ranked and bounded in Spark, what the driver receives, and what
a run publishes with the rest, or not at all."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest

from chalicelib import rules, runs
from glue_jobs import transforms as t
from glue_jobs.pipeline import build_result
from tests.helpers import outputs

SEGMENTS = {r.name: [None, *(s.label for s in r.segments)] for r in rules.SEGMENT_RULES}
#: The choices of a country: its fallback, then each segment of each rule.
FALLBACK = runs.FALLBACK_KEY


def test_the_tally_reaching_the_driver_is_bounded_whatever_the_number_of_amounts(spark):
    """3,000 distinct amounts in every combination of segments: the tally holds at most the
    top amounts and one bucket per choice, plus a row per reason."""
    frequent, recency = SEGMENTS.values()
    kept, rejected = outputs(
        spark,
        kept=[
            ("peru", float(i + 1), frequent[i % len(frequent)], recency[i % len(recency)], 1)
            for i in range(3_000)
        ],
        rejected=[("peru", code, 1) for code in rules.REASON_CODES],
    )
    choices = 1 + sum(len(r.segments) for r in rules.SEGMENT_RULES)
    bound = choices * (runs.USAGE_TOP_AMOUNTS + 1) + len(rules.REASON_CODES)
    assert t.tally(kept, rejected).count() <= bound


def expected_usage(rows: list[tuple], top: int) -> dict[tuple, list[tuple]]:
    """Per choice ``(country, segment_name, segment)``: ``(position, amount, rows, amounts)``
    of the SPEC's order (most rows first, a tie to the lower amount), the first ``top`` named,
    the rest as one bucket; from ``(country, amount, frequent, recency, rows)`` in plain Python."""
    counts: dict[tuple, Counter] = {}
    for country, amount, *segments, n in rows:
        choices = [(country, *FALLBACK)] + [
            (country, name, segment)
            for name, segment in zip(SEGMENTS, segments, strict=True)
            if segment is not None
        ]
        for choice in choices:
            counts.setdefault(choice, Counter())[amount] += n
    usage = {}
    for choice, amounts in counts.items():
        order = sorted(amounts.items(), key=lambda item: (-item[1], item[0]))
        named = [(i + 1, amount, n, 1) for i, (amount, n) in enumerate(order[:top])]
        rest = order[top:]
        other = [(top + 1, None, sum(n for _, n in rest), len(rest))] if rest else []
        usage[choice] = named + other
    return usage


def generated_history(seed: int, countries: int = 250) -> tuple[list[tuple], list[tuple]]:
    """Kept and rejected rows of many small countries: 1 to 25 amounts each, drawn so that
    ties are common, segments at random (none included); a few keep no row at all."""
    rng = random.Random(seed)
    kept, rejected = [], []
    for c in range(countries):
        country = f"c{c:03d}"
        pool = rng.sample([25.0 * k for k in range(1, 60)], rng.randint(1, 25))
        for _ in range(rng.choice([0, *range(1, 40)])):  # some countries keep no row
            segments = [rng.choice(labels) for labels in SEGMENTS.values()]
            kept.append((country, rng.choice(pool), *segments, rng.randint(1, 3)))
        for code in rng.sample(rules.REASON_CODES, rng.randint(0, 3)):
            rejected.append((country, code, rng.randint(1, 4)))
    return kept, rejected


@pytest.mark.parametrize("top", [runs.USAGE_TOP_AMOUNTS, 3, 2])
def test_usage_selections_and_counts_equal_plain_python_on_generated_histories(spark, top):
    """Seeded (``USAGE_SEED`` replays one): the published usage is the SPEC's order cut at the
    limit, the selections and fallbacks its first two positions, and the statistics reconcile."""
    seed = int(os.environ.get("USAGE_SEED") or random.randrange(2**32))
    print(f"USAGE_SEED={seed}")
    kept_rows, rejected_rows = generated_history(seed)
    kept, rejected = outputs(spark, kept_rows, rejected_rows)
    result = build_result(t.tally(kept, rejected, top), rows_read=10**6)

    expected = expected_usage(kept_rows, top)
    got: dict[tuple, list[tuple]] = {}
    for u in result.usage:
        got.setdefault((u.country_key, u.segment_name, u.segment), []).append(
            (u.position, u.voucher_amount, u.voucher_rows, u.amounts)
        )
    assert got == expected, f"USAGE_SEED={seed}"
    assert any(len(bars) > top for bars in got.values()), "no case reached the other bucket"

    def ranked(bars: list[tuple]) -> tuple:
        second = bars[1][1:3] if len(bars) > 1 else (None, 0)
        return (bars[0][1], bars[0][2], sum(b[2] for b in bars), *second)

    chosen = {
        (s.country_key, s.segment_name, s.segment): (
            s.voucher_amount,
            s.voucher_rows,
            s.segment_rows,
            s.runner_up_amount,
            s.runner_up_rows,
        )
        for s in result.selections
    }
    segments = {c: bars for c, bars in expected.items() if c[1] is not None}
    assert chosen == {c: ranked(bars) for c, bars in segments.items()}, f"USAGE_SEED={seed}"
    fallbacks = {
        f.country_key: (
            f.voucher_amount,
            f.voucher_rows,
            f.country_rows,
            f.runner_up_amount,
            f.runner_up_rows,
        )
        for f in result.fallbacks
    }
    assert fallbacks == {c[0]: ranked(bars) for c, bars in expected.items() if c[1] is None}

    kept_per_country: Counter = Counter()
    in_segments: Counter = Counter()
    for country, _, *segment_of, n in kept_rows:
        kept_per_country[country] += n
        for name, segment in zip(SEGMENTS, segment_of, strict=True):
            in_segments[(country, name)] += n if segment is not None else 0
    rejected_per_country: Counter = Counter()
    for country, _, n in rejected_rows:
        rejected_per_country[country] += n
    for stats in result.countries:
        key = stats.country_key
        assert (stats.rows_kept, stats.rows_rejected) == (
            kept_per_country[key],
            rejected_per_country[key],
        ), f"USAGE_SEED={seed}"
        assert stats.unsegmented == {
            name: kept_per_country[key] - in_segments[(key, name)] for name in SEGMENTS
        }
    assert result.rows_out_of_scope == 10**6 - sum(c.rows_in for c in result.countries)


def test_a_limit_below_the_runner_up_is_refused(spark):
    kept, rejected = outputs(spark)
    with pytest.raises(ValueError, match="at least the winner and the runner-up"):
        t.usage(kept, top=1)
