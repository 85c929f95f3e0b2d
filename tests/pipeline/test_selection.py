"""The driver-side reduction of the tally: no Spark needed."""

from chalicelib import rules
from glue_jobs.selection import most_used, result_from_tally


def test_most_used_takes_the_most_rows_and_a_tie_goes_to_the_lower_amount():
    counts = {("peru", 4400.0): 5, ("peru", 2640.0): 5, ("peru", 8800.0): 1, ("chile", 10.0): 2}
    assert most_used(counts) == {
        ("peru",): (2640.0, 5, 11, 4400.0, 5),
        ("chile",): (10.0, 2, 2, None, 0),
    }


def test_the_runner_up_is_second_by_the_same_order():
    counts = {("p", 1.0): 1, ("p", 9.0): 3, ("p", 5.0): 2, ("p", 4.0): 2}
    assert most_used(counts) == {("p",): (9.0, 3, 8, 4.0, 2)}


def tally_row(reason=None, amount=None, frequent=None, recency=None, rows=1):
    return {
        "country_key": "peru",
        "country": "Peru",
        "reason": reason,
        "voucher_amount": amount,
        "frequent_segment": frequent,
        "recency_segment": recency,
        "rows": rows,
    }


def test_statistics_reconcile_and_each_segment_gets_its_own_selection():
    tallied = [
        tally_row(amount=2640.0, frequent="0-4", recency="30-60", rows=3),
        tally_row(reason="duplicate_row", rows=2),
        tally_row(amount=4400.0, frequent="0-4", recency=None, rows=4),
        tally_row(amount=4400.0, frequent=None, recency="30-60", rows=1),
        tally_row(reason="missing_value", rows=2),
        tally_row(reason="voucher_before_last_order", rows=1),
    ]
    result = result_from_tally(tallied, rows_read=20)
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
