"""``POST /vouchers``: a list answered item by item like ``POST /voucher``, from one snapshot."""

from __future__ import annotations

import threading

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.api.request import MAX_BATCH_BODY_BYTES, MAX_BATCH_ITEMS
from scripts import sample_runs
from scripts.sample_runs import PERU, SAMPLE
from tests.helpers import assert_error, post

#: Values each field may take: valid ones and every kind of refusal (null: the field is absent).
VALUES = {
    "customer_id": [1, "c-2", None, 1.5],
    "country_code": ["Peru", " latvia ", "CHINA", "Narnia", "", 5, None],
    "segment_name": ["frequent_segment", "recency_segment", "bogus", None],
    "total_orders": [0, 3, 15, "15.0", 40, -1, "x", None],
    "last_order_ts": ["2026-01-01", "2026-10-20 10:00:00", "2018-05-03", "2030-01-01", "bad", None],
    "first_order_ts": ["2017-05-03", "2026-10-01T00:00:00Z", "2026-12-01", None],
    "timestamp": ["2026-11-01", "2026-06-30T23:00:00-05:00", None, "0000-00-00"],
    "strict": [True, False, None, "yes"],
}
SHARED = ("country_code", "segment_name", "timestamp", "strict")

customers = st.fixed_dictionaries({}, optional={f: st.sampled_from(v) for f, v in VALUES.items()})
defaults = st.fixed_dictionaries({}, optional={f: st.sampled_from(VALUES[f]) for f in SHARED})


def expected_results(client, shared: dict, items: list[dict]) -> list[dict]:
    """Each item sent alone to ``POST /voucher``, with the shared fields it does not give."""
    results = []
    for index, item in enumerate(items):
        body = {f: v for f, v in shared.items() if v is not None} | {
            f: v for f, v in item.items() if v is not None
        }
        status, answer = post(client, body)
        results.append(answer if status == 200 else {**answer, "index": index})
    return results


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # fixtures are read-only
@given(shared=defaults, items=st.lists(customers, max_size=30))
def test_a_list_is_answered_like_its_items_one_by_one(client, published, shared, items):
    status, answer = post(client, {**shared, "customers": items}, "/vouchers")
    assert status == 200
    assert answer["results"] == expected_results(client, shared, items)
    answered = {r["country_code"] for r in answer["results"] if "error" not in r}
    assert answer["runs"] == dict.fromkeys(sorted(answered), sample_runs.FIRST_RUN)


def test_shared_fields_are_defaults_an_item_overrides(client, published):
    body = {
        "country_code": "Latvia",
        "segment_name": "frequent_segment",
        "strict": True,
        "customers": [
            {"total_orders": 3},
            {"total_orders": 3, "country_code": "Peru"},
            {"total_orders": 20},
            {"total_orders": 20, "strict": False},
        ],
    }
    status, answer = post(client, body, "/vouchers")
    assert status == 200
    first, second, third, fourth = answer["results"]
    assert (first["country_code"], first["voucher_amount"]) == ("Latvia", 5)
    assert (second["country_code"], second["voucher_amount"]) == ("Peru", 1100)
    assert third == {
        "error": {
            "code": "segment_without_history",
            "field": "segment_name",
            "message": third["error"]["message"],
        },
        "index": 2,
    }
    assert (fourth["basis"], fourth["voucher_amount"]) == ("country", 10)


@pytest.mark.parametrize(
    "body, code",
    [
        ({"customers": {"a": 1}}, "invalid_field"),
        ({"customers": [SAMPLE, 3]}, "invalid_field"),
        ({"country_code": "Peru"}, "invalid_field"),
        ({"customers": [SAMPLE] * (MAX_BATCH_ITEMS + 1)}, "too_many_items"),
        ([SAMPLE], "malformed_json"),
    ],
)
def test_the_request_as_a_whole_is_refused_only_when_it_is_no_list_of_objects(
    client, published, body, code
):
    assert_error(
        post(client, body, "/vouchers"),
        400,
        code,
        None if code == "malformed_json" else "customers",
    )


def test_the_longest_list_is_answered(client, published):
    status, answer = post(client, {"customers": [SAMPLE] * MAX_BATCH_ITEMS}, "/vouchers")
    assert status == 200
    assert {r["voucher_amount"] for r in answer["results"]} == {PERU["recency_segment", "180+"]}


def test_a_list_stays_on_one_run_while_runs_publish(client, db, database_url):
    """Runs publishing every amount at 1000, 1001, ... while lists of 300 customers across three
    countries are answered: each list's amounts and runs are those of one run."""
    sample_runs.publish(db, *sample_runs.one_amount_run("run-batch-0", 1000.0))
    stop, published = threading.Event(), []

    def publisher() -> None:
        conn = psycopg2.connect(database_url)
        try:
            while not stop.is_set():
                n = len(published) + 1
                sample_runs.publish(conn, *sample_runs.one_amount_run(f"run-batch-{n}", 1000.0 + n))
                published.append(n)
        finally:
            conn.close()

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        seen = []
        items = [{**SAMPLE, "country_code": c} for c in ("Peru", "Latvia", "China")] * 100
        while thread.is_alive() and (len(published) < 5 or len(seen) < 5):
            status, answer = post(client, {"customers": items}, "/vouchers")
            assert status == 200
            amounts = {r["voucher_amount"] for r in answer["results"]}
            runs = set(answer["runs"].values())
            assert len(amounts) == 1 and len(runs) == 1, (amounts, runs)
            assert runs == {f"run-batch-{int(amounts.pop()) - 1000}"}
            seen.append(runs.pop())
    finally:
        stop.set()
        thread.join()
    assert len(published) >= 5 and len(seen) >= 5, "the publisher stopped early"
    assert len(set(seen)) > 1  # the lists were answered while the runs changed


def test_a_list_over_the_body_limit_is_refused_whole(client, published):
    body = {
        "customers": [{**SAMPLE, "customer_id": "x" * 190}] * 900,
        "pad": "y" * MAX_BATCH_BODY_BYTES,
    }
    status, answer = post(client, body, "/vouchers")
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
