"""How strong each selection is (share, runner-up, lead, ``MIN_SEGMENT_ROWS``) and what each run
changed, as ``GET /selection_criteria``, ``POST /voucher`` and ``GET /runs/{id}`` show them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.runs import Selection
from scripts import sample_runs
from scripts.sample_runs import PERU, PERU_FALLBACK, SAMPLE
from tests.helpers import assert_error, get, post


def peru(body: dict) -> dict:
    [country] = body["countries"]
    return {
        (r["segment_name"], s["segment"]): s
        for r in country["segment_rules"]
        for s in r["segments"]
    } | {(None, None): country["fallback"]}


def test_share_runner_up_and_lead(client, db):
    result = sample_runs.run_result(("peru", "Peru", PERU, PERU_FALLBACK, 5000))
    result.selections[-1] = Selection("peru", "recency_segment", "180+", 2640.0, 30, 60, 4400.0, 20)
    sample_runs.publish(db, "run-strength", result)
    segments = peru(get(client, "/selection_criteria?country=Peru")[1])
    landslide = segments["recency_segment", "180+"]
    assert landslide["share"] == 0.5
    assert landslide["runner_up"] == {
        "voucher_amount": 4400,
        "voucher_rows": 20,
        "share": pytest.approx(1 / 3),
    }
    assert landslide["lead"] == pytest.approx(1 / 6)
    alone = segments["frequent_segment", "0-4"]  # one amount only: its share is its lead
    assert (alone["runner_up"], alone["lead"]) == (None, alone["share"])
    assert alone["share"] == 10 / 40


def test_segments_with_fewer_rows_than_the_run_requires_answer_the_fallback(client, db):
    """Peru's segments have 40 to 47 kept rows; with MIN_SEGMENT_ROWS 45 the first five fall
    back to the country's voucher, saying why, and strict mode refuses them."""
    result = replace(
        sample_runs.run_result(("peru", "Peru", PERU, PERU_FALLBACK, 5000)), min_segment_rows=45
    )
    sample_runs.publish(db, "run-min-rows", result)
    status, body = get(client, "/selection_criteria?country=Peru")
    assert body["countries"][0]["min_segment_rows"] == 45
    below = {key for key, s in peru(body).items() if s.get("below_min_rows")}
    assert below == {
        ("frequent_segment", "0-4"),
        ("frequent_segment", "5-13"),
        ("frequent_segment", "14-37"),
        ("recency_segment", "30-60"),
        ("recency_segment", "61-90"),
    }
    frequent = {"country_code": "Peru", "segment_name": "frequent_segment", "total_orders": 2}
    status, answer = post(client, frequent)
    assert (status, answer["basis"], answer["voucher_amount"]) == (200, "country", PERU_FALLBACK)
    assert answer["fallback_reason"] == (
        "segment 0-4 of frequent_segment has 40 kept rows in this country, fewer than the 45"
        " its run requires (MIN_SEGMENT_ROWS)"
    )
    assert_error(
        post(client, {**frequent, "strict": True}), 404, "segment_below_min_rows", "segment_name"
    )
    status, answer = post(client, SAMPLE)  # 180+: 47 rows, its own selection
    assert (answer["basis"], "fallback_reason" in answer) == ("segment", False)
    assert get(client, "/runs/run-min-rows")[1]["min_segment_rows"] == 45


def test_each_run_records_the_selections_it_changed(client, db):
    """First result: every selection is new. Second: every amount moved. Third: two segments
    and the fallback move back; the others stay."""
    sample_runs.publish(db, sample_runs.FIRST_RUN, sample_runs.FIRST)
    sample_runs.publish(db, sample_runs.SECOND_RUN, sample_runs.SECOND)
    moved = {("frequent_segment", "0-4"): 1.0, ("recency_segment", "61-90"): 2.0}
    third = sample_runs.run_result(
        ("peru", "Peru", sample_runs.PERU_SECOND | moved, PERU_FALLBACK, 5200)
    )
    sample_runs.publish(db, "run-third", third)

    first = get(client, f"/runs/{sample_runs.FIRST_RUN}")[1]["changes"]
    assert {c["country_key"] for c in first} == {"peru", "latvia", "china"}
    assert all(c["old_voucher_amount"] is None and c["replaced_run_id"] is None for c in first)
    assert len([c for c in first if c["country_key"] == "peru"]) == len(PERU) + 1
    second = get(client, f"/runs/{sample_runs.SECOND_RUN}")[1]["changes"]
    assert len(second) == len(PERU) + 1 and {c["country_key"] for c in second} == {"peru"}
    changes = get(client, "/runs/run-third")[1]["changes"]
    assert [
        (
            c["segment_name"],
            c["segment"],
            c["old_voucher_amount"],
            c["new_voucher_amount"],
            c["replaced_run_id"],
        )
        for c in changes
    ] == [
        ("frequent_segment", "0-4", 1101, 1, sample_runs.SECOND_RUN),
        ("recency_segment", "61-90", 4401, 2, sample_runs.SECOND_RUN),
        (None, None, sample_runs.PERU_SECOND_FALLBACK, PERU_FALLBACK, sample_runs.SECOND_RUN),
    ]
    assert changes[0]["old_share"] == 10 / 40 == changes[0]["new_share"]

    last = {
        key: s["last_changed"]
        for key, s in peru(get(client, "/selection_criteria?country=Peru")[1]).items()
    }
    assert {key for key, c in last.items() if c["run_id"] == "run-third"} == {*moved, (None, None)}
    assert {c["run_id"] for key, c in last.items() if key not in moved and key != (None, None)} == {
        sample_runs.SECOND_RUN
    }
    assert last["frequent_segment", "0-4"]["old_voucher_amount"] == 1101


def test_a_run_that_changes_nothing_records_nothing(client, db):
    sample_runs.publish(db, sample_runs.FIRST_RUN, sample_runs.FIRST)
    sample_runs.publish(db, "run-same", sample_runs.FIRST)
    assert get(client, "/runs/run-same")[1]["changes"] == []
    last = peru(get(client, "/selection_criteria?country=Peru")[1])
    assert {s["last_changed"]["run_id"] for s in last.values()} == {sample_runs.FIRST_RUN}
