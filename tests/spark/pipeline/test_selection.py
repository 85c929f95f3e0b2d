"""The selection from the tally: ranked in Spark (:func:`glue_jobs.transforms.usage`), read on
the driver (:mod:`glue_jobs.selection`)."""

from chalicelib import rules
from glue_jobs import transforms as t
from glue_jobs.pipeline import build_result
from tests.helpers import outputs


def most_used(spark, counts: dict) -> dict:
    """Per country, from ``{(country, amount): rows}``: the fallback the job publishes as
    (amount, rows, all rows, runner-up, its rows)."""
    kept, rejected = outputs(spark, [(c, a, None, None, n) for (c, a), n in counts.items()])
    return {
        (f.country_key,): (
            f.voucher_amount,
            f.voucher_rows,
            f.country_rows,
            f.runner_up_amount,
            f.runner_up_rows,
        )
        for f in build_result(t.tally(kept, rejected), rows_read=0).fallbacks
    }


def test_most_used_takes_the_most_rows_and_a_tie_goes_to_the_lower_amount(spark):
    counts = {("peru", 4400.0): 5, ("peru", 2640.0): 5, ("peru", 8800.0): 1, ("chile", 10.0): 2}
    assert most_used(spark, counts) == {
        ("peru",): (2640.0, 5, 11, 4400.0, 5),
        ("chile",): (10.0, 2, 2, None, 0),
    }


def test_the_runner_up_is_second_by_the_same_order(spark):
    counts = {("p", 1.0): 1, ("p", 9.0): 3, ("p", 5.0): 2, ("p", 4.0): 2}
    assert most_used(spark, counts) == {("p",): (9.0, 3, 8, 4.0, 2)}


def test_statistics_reconcile_and_each_segment_gets_its_own_selection(spark):
    kept, rejected = outputs(
        spark,
        kept=[
            ("peru", 2640.0, "0-4", "30-60", 3),
            ("peru", 4400.0, "0-4", None, 4),
            ("peru", 4400.0, None, "30-60", 1),
        ],
        rejected=[
            ("peru", "duplicate_row", 2),
            ("peru", "missing_value", 2),
            ("peru", "voucher_before_last_order", 1),
        ],
    )
    result = build_result(t.tally(kept, rejected), rows_read=20)
    [peru] = result.countries
    assert (peru.rows_in, peru.rows_kept, peru.rows_rejected) == (13, 8, 5)
    assert peru.rejected_by_reason == {
        **dict.fromkeys(rules.REASON_CODES, 0),
        "duplicate_row": 2,
        "missing_value": 2,
        "voucher_before_last_order": 1,
    }
    assert peru.unsegmented == {"frequent_segment": 1, "recency_segment": 4}
    assert result.rows_out_of_scope == 7
    chosen = {
        (s.segment_name, s.segment): (s.voucher_amount, s.voucher_rows, s.segment_rows)
        for s in result.selections
    }
    assert chosen == {
        ("frequent_segment", "0-4"): (4400.0, 4, 7),
        ("recency_segment", "30-60"): (2640.0, 3, 4),
    }
    [fallback] = result.fallbacks
    assert (fallback.voucher_amount, fallback.voucher_rows, fallback.country_rows) == (4400.0, 5, 8)
