"""``GET /selection_criteria?detail=usage,changes``: the usage behind each choice and how each
choice changed over its country's last runs, read from what the runs published."""

from __future__ import annotations

import pytest

from chalicelib.api.detail import RECENT_RUNS
from chalicelib.runs import USAGE_TOP_AMOUNTS
from scripts import sample_runs
from scripts.sample_runs import PERU
from tests.helpers import assert_error, get


def choices(body: dict) -> dict:
    """(country_key, segment_name, segment) -> its criteria; the fallback's (key, None, None)."""
    found = {}
    for country in body["countries"]:
        key = country["country_key"]
        found[(key, None, None)] = country["fallback"]
        for rule in country["segment_rules"]:
            for s in rule["segments"]:
                found[(key, rule["segment_name"], s["segment"])] = s
    return found


def test_the_usage_behind_each_choice_is_shown_on_request(client, published_with_usage):
    status, plain = get(client, "/selection_criteria")
    assert status == 200
    shown = {field for c in choices(plain).values() for field in ("usage", "changes") if field in c}
    assert shown == set(), "the answer without detail is unchanged"

    status, body = get(client, "/selection_criteria?detail=usage")
    assert status == 200
    found = choices(body)
    late = found[("peru", "recency_segment", "180+")]
    assert late["usage"] == {
        "amounts": [{"voucher_amount": 2640, "rows": 30}, {"voucher_amount": 4400, "rows": 20}]
        + [{"voucher_amount": 100 + i, "rows": 1} for i in range(USAGE_TOP_AMOUNTS - 2)],
        "other": {"rows": 2, "amounts": 2},
    }
    rows = sum(a["rows"] for a in late["usage"]["amounts"]) + late["usage"]["other"]["rows"]
    assert rows == late["segment_rows"]
    assert late["usage"]["amounts"][0]["voucher_amount"] == late["voucher_amount"]
    kept = found[("peru", None, None)]["country_rows"]
    assert found[("peru", None, None)]["usage"] == {
        "amounts": [
            {"voucher_amount": 2640, "rows": kept - 979},
            {"voucher_amount": 4400, "rows": 979},
        ],
        "other": None,
    }
    assert found[("peru", "frequent_segment", "0-4")]["usage"] == {"amounts": [], "other": None}
    # Latvia and China are served by a run that recorded no usage: none, not an empty chart.
    assert {k for k, c in found.items() if c["usage"] is None} == {
        k for k in found if k[0] != "peru"
    }


def test_the_changes_of_each_choice_over_the_last_runs(client, db):
    sample_runs.publish(db, sample_runs.FIRST_RUN, sample_runs.FIRST)
    sample_runs.publish(db, sample_runs.SECOND_RUN, sample_runs.SECOND)
    status, body = get(client, "/selection_criteria?detail=changes")
    assert status == 200
    recent = {c["country_key"]: [r["run_id"] for r in c["recent_runs"]] for c in body["countries"]}
    assert recent == {
        "peru": [sample_runs.SECOND_RUN, sample_runs.FIRST_RUN],
        "latvia": [sample_runs.FIRST_RUN],
        "china": [sample_runs.FIRST_RUN],
    }
    found = choices(body)
    late = found[("peru", "recency_segment", "180+")]["changes"]
    assert [(c["run_id"], c["old_voucher_amount"], c["new_voucher_amount"]) for c in late] == [
        (sample_runs.SECOND_RUN, 2640, 2641),
        (sample_runs.FIRST_RUN, None, 2640),
    ]
    assert late[0]["old_share"] == pytest.approx(late[1]["new_share"])
    fallback = found[("peru", None, None)]["changes"]
    assert [c["new_voucher_amount"] for c in fallback] == [2641, 2640]
    assert found[("latvia", "frequent_segment", "14-37")]["changes"] == []  # never had history
    assert "usage" not in found[("peru", None, None)]


def test_changes_look_back_over_the_last_runs_only(client, db):
    runs = [f"run-{i:02d}" for i in range(RECENT_RUNS + 2)]
    for i, run_id in enumerate(runs):
        amounts = {key: 1000.0 + i for key in PERU}
        sample_runs.publish(
            db, run_id, sample_runs.run_result(("peru", "Peru", amounts, 1000.0 + i, 900))
        )
    body = get(client, "/selection_criteria?detail=changes,usage&country=peru")[1]
    [peru] = body["countries"]
    assert [r["run_id"] for r in peru["recent_runs"]] == runs[::-1][:RECENT_RUNS]
    changes = peru["fallback"]["changes"]
    assert [c["run_id"] for c in changes] == runs[::-1][:RECENT_RUNS]
    assert [c["new_voucher_amount"] for c in changes] == [
        1000 + i for i in reversed(range(2, RECENT_RUNS + 2))
    ]
    assert peru["fallback"]["usage"] is None  # both details at once


@pytest.mark.parametrize(
    "detail", ["", "Usage", "all", "usage,", "usage;changes", "usage, changes"]
)
def test_an_unknown_detail_is_a_400(client, published, detail):
    assert_error(
        get(client, f"/selection_criteria?detail={detail}"), 400, "invalid_field", "detail"
    )
