"""Hostile requests: a larger schemathesis run, oversized and deeply nested JSON in every field,
hostile query strings and paths, and 100 concurrent requests while a new run publishes.

SQL injection in every field is ``test_sql_injection_in_every_field_is_a_clean_refusal`` in
``tests/stack/api/test_routes.py``; the smaller schemathesis run, ``tests/stack/api/test_http.py``.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import schemathesis

from chalicelib.api.request import MAX_BODY_BYTES
from scripts import sample_runs
from scripts.sample_runs import SAMPLE
from tests.helpers import call, get, post, schema_of, table_counts

FIELDS = [
    "customer_id",
    "country_code",
    "segment_name",
    "total_orders",
    "last_order_ts",
    "first_order_ts",
    "timestamp",
    "strict",
]
DEPTH = 20_000  # far beyond any parser's recursion limit, within the 64 KiB body limit


def body_with(field: str, raw_value: str) -> bytes:
    """SAMPLE with ``field`` set to ``raw_value``, a JSON text spliced in as it is."""
    return json.dumps({**SAMPLE, field: "@@"}).replace('"@@"', raw_value).encode()


ATTACKS = {
    "oversized": lambda: json.dumps("x" * (MAX_BODY_BYTES + 1)),
    "deep_array": lambda: "[" * DEPTH + "]" * DEPTH,
    "deep_object": lambda: '{"a":' * (DEPTH // 4) + "1" + "}" * (DEPTH // 4),
    "nested_50": lambda: '{"a":[' * 50 + "1" + "]}" * 50,
    "long_text": lambda: json.dumps("Ω" * 20_000),
    "long_digits": lambda: json.dumps("9" * 60_000),
    "huge_number": lambda: "9" * 5_000,  # beyond Python's int conversion limit
    "infinite_number": lambda: "1e999",
    "nul_and_surrogate": lambda: json.dumps("Peru\u0000\ud800"),
}


def is_clean_refusal(status: int, body: dict, field: str) -> bool:
    error = body.get("error", {})
    return (
        status in (400, 404, 413)
        and set(error) == {"code", "message", "field"}
        and error["field"] in (field, None)
        and "Traceback" not in error["message"]
    )


@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_json_in_every_field_is_a_clean_400_404_or_413(client, published, attack):
    before = table_counts(published)
    for field in FIELDS:
        status, answer = post(client, body_with(field, ATTACKS[attack]()))
        if status == 200:  # only a customer_id may be any short text or any integer
            assert field == "customer_id" and attack in ("huge_number", "nul_and_surrogate")
            continue
        assert is_clean_refusal(status, answer, field), (field, status, answer)
        if attack == "oversized":
            assert (status, answer["error"]["code"]) == (413, "body_too_large")
        if attack.startswith("deep"):
            assert (status, answer["error"]["code"]) == (400, "malformed_json")
            assert "nested too deeply" in answer["error"]["message"]
    assert table_counts(published) == before
    assert post(client, SAMPLE)[1]["voucher_amount"] == 2640


@pytest.mark.parametrize(
    "value",
    ["'; DROP TABLE runs; --", "²", "١٢", "9" * 5_000, "\u0000", "x" * 10_000, "-1", "1e2"],
)
def test_hostile_query_strings_and_paths_are_a_clean_400_or_404(client, published, value):
    before = table_counts(published)
    for path, field in [
        (f"/selection_criteria?country={quote(value)}", "country"),
        (f"/runs?limit={quote(value)}", "limit"),
        (f"/runs/{quote(value, safe='')}", "run_id"),
    ]:
        status, answer = get(client, path)
        assert is_clean_refusal(status, answer, field), (path[:80], status, answer)
    assert table_counts(published) == before


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_timestamp_whose_utc_moment_leaves_the_calendar_is_a_400(client, published, value):
    for field in ("last_order_ts", "first_order_ts", "timestamp"):
        status, answer = post(client, {**SAMPLE, field: value})
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (
            400,
            "invalid_field",
            field,
        )


MORE_EXAMPLES = 400  # per operation and mode: 20 to 60 s on two shared cores


@pytest.fixture
def larger_api_schema(local_api, published):
    return schema_of(local_api, MORE_EXAMPLES)


larger_schema = schemathesis.pytest.from_fixture("larger_api_schema")


@pytest.mark.fuzz
@larger_schema.parametrize()
def test_many_more_generated_requests_match_the_openapi_document(case):
    case.call_and_validate()  # every check schemathesis has


def amounts_and_runs(answer: dict) -> tuple[set, set]:
    """Every voucher amount in an answer, and the runs it names."""
    if "voucher_amount" in answer:
        return {answer["voucher_amount"]}, set()
    countries = answer.get("countries", [])
    assert len(countries) == 3, answer
    amounts = {c["fallback"]["voucher_amount"] for c in countries} | {
        s["voucher_amount"] for c in countries for r in c["segment_rules"] for s in r["segments"]
    }
    return amounts, {c["run"]["run_id"] for c in countries}


def test_100_concurrent_requests_during_a_publish_each_see_one_whole_run(local_api, db):
    """Run A has every amount at 1111, run B at 2222 (three countries each): an answer mixing
    them, or naming one run with the other's amounts, would be a torn read."""
    sample_runs.publish(db, *sample_runs.one_amount_run("run-all-a", 1111.0))
    whole = [({1111}, {"run-all-a"}), ({2222}, {"run-all-b"}), ({1111}, set()), ({2222}, set())]
    answers, lock = [], threading.Condition()
    published = threading.Event()

    def client_thread(n: int) -> None:
        """Requests until one has started after B was published (at most 50)."""
        for i in range(50):
            after = published.is_set()
            if (n + i) % 2:
                answer = call(local_api, "/selection_criteria")
            else:
                country = ("Peru", "Latvia", "China")[(n + i) % 3]
                answer = call(local_api, "/voucher", {**SAMPLE, "country_code": country})
            with lock:
                answers.append((after, answer))
                lock.notify_all()
            if after:
                return

    with ThreadPoolExecutor(max_workers=100) as pool:
        done = [pool.submit(client_thread, n) for n in range(100)]
        with lock:  # some answers before the publish: they can only be A
            assert lock.wait_for(lambda: len(answers) >= 20, timeout=120)
        # while requests run:
        sample_runs.publish(db, *sample_runs.one_amount_run("run-all-b", 2222.0))
        published.set()
        for future in done:
            future.result()

    for after, answer in answers:
        assert amounts_and_runs(answer) in whole, answer
        if after:  # started once B was published: B, wholly
            assert amounts_and_runs(answer)[0] == {2222}, answer
    seen = {frozenset(amounts_and_runs(a)[0]) for _, a in answers}
    assert seen == {frozenset({1111}), frozenset({2222})}
    assert sum(after for after, _ in answers) == 100
