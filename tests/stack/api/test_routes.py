"""Every route through Chalice's test client, against a real PostgreSQL holding published runs."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote, urljoin, urlsplit

import pytest
from openapi_spec_validator import validate

from app import app
from chalicelib.api.detail import DETAILS, RECENT_RUNS
from chalicelib.api.request import (
    BLANK_PATTERN,
    ORDERS_TEXT_PATTERN,
    TIMESTAMP_PATTERN,
    ZERO_ORDERS_TEXT_PATTERN,
    names_pattern,
)
from chalicelib.api.routes import static_text
from chalicelib.api.run_history import LIMIT_PATTERN
from chalicelib.rules import SEGMENT_RULES
from chalicelib.runs import RUN_STATUSES, USAGE_TOP_AMOUNTS
from infra.local.paths import REPO_ROOT
from scripts import sample_runs
from scripts.sample_runs import LATVIA_FALLBACK, PERU, PERU_FALLBACK, SAMPLE
from tests.helpers import RECENCY_BOUNDARIES, assert_error, get, post, table_counts

VOUCHER_DAY = date(2018, 12, 1)


def days_ago(days: int) -> str:
    return (VOUCHER_DAY - timedelta(days=days)).isoformat()


def test_the_spec_sample_answers_the_segment_voucher_as_an_integer(client, published):
    response = client.http.post(
        "/voucher", headers={"Content-Type": "application/json"}, body=json.dumps(SAMPLE).encode()
    )
    assert response.status_code == 200
    assert json.loads(response.body) == {
        "voucher_amount": 2640,
        "customer_id": 123,
        "country_code": "Peru",
        "segment_name": "recency_segment",
        "segment": "180+",
        "basis": "segment",
    }
    assert b'"voucher_amount":2640,' in response.body  # an integer, not 2640.0


@pytest.mark.parametrize(
    ("orders", "segment"),
    [(0, "0-4"), (4, "0-4"), (5, "5-13"), (13, "5-13"), (14, "14-37"), (37, "14-37")],
)
def test_every_frequency_boundary(client, published, orders, segment):
    status, body = post(
        client, {"country_code": "Peru", "segment_name": "frequent_segment", "total_orders": orders}
    )
    assert status == 200
    assert (body["segment"], body["basis"]) == (segment, "segment")
    assert body["voucher_amount"] == PERU["frequent_segment", segment]


@pytest.mark.parametrize(("days", "segment"), RECENCY_BOUNDARIES)
def test_every_recency_boundary(client, published, days, segment):
    status, body = post(
        client,
        {
            "country_code": "Peru",
            "segment_name": "recency_segment",
            "last_order_ts": days_ago(days),
            "timestamp": f"{VOUCHER_DAY} 12:00:00",
        },
    )
    assert status == 200
    assert (body["segment"], body["basis"]) == (segment, "segment")
    assert body["voucher_amount"] == PERU["recency_segment", segment]


def test_a_last_order_in_year_1_is_a_date_like_any_other(client, published):
    status, body = post(
        client,
        {"country_code": "Peru", "segment_name": "recency_segment", "last_order_ts": "0001-01-01"},
    )
    assert (status, body["segment"], body["basis"]) == (200, "180+", "segment")
    assert body["voucher_amount"] == PERU["recency_segment", "180+"]


def test_recency_counts_utc_dates(client, published):
    """23:30 at UTC-5 on 3 May is 4 May in UTC: 60 days to 3 July (30-60), not 61 (61-90)."""
    base = {
        "country_code": "Peru",
        "segment_name": "recency_segment",
        "timestamp": "2018-07-03T09:00:00Z",
    }
    _, aware = post(client, {**base, "last_order_ts": "2018-05-03T23:30:00-05:00"})
    _, naive = post(client, {**base, "last_order_ts": "2018-05-03T23:30:00"})
    assert (aware["segment"], naive["segment"]) == ("30-60", "61-90")


def test_recency_without_timestamp_counts_to_today(client, published):
    today = datetime.now(UTC).date()
    status, body = post(
        client,
        {
            "country_code": "Peru",
            "segment_name": "recency_segment",
            "last_order_ts": (today - timedelta(days=100)).isoformat(),
        },
    )
    assert (status, body["segment"]) == (200, "91-120")


FREQUENT, RECENT = "frequent_segment", "recency_segment"


@pytest.mark.parametrize(
    ("fields", "segment", "strict_code", "strict_field"),
    [
        (
            {"segment_name": FREQUENT, "total_orders": 20},
            "14-37",
            "segment_without_history",
            "segment_name",
        ),
        (
            {"segment_name": RECENT, "last_order_ts": days_ago(200)},
            "180+",
            "segment_without_history",
            "segment_name",
        ),
        ({"segment_name": FREQUENT, "total_orders": 38}, None, "no_segment", "total_orders"),
        (
            {"segment_name": RECENT, "last_order_ts": days_ago(29)},
            None,
            "no_segment",
            "last_order_ts",
        ),
        (
            {"segment_name": RECENT, "last_order_ts": days_ago(0)},
            None,
            "no_segment",
            "last_order_ts",
        ),
    ],
)
def test_no_segment_or_no_history_falls_back_to_the_country_unless_strict(
    client, published, fields, segment, strict_code, strict_field
):
    body = {"country_code": "Latvia", "timestamp": VOUCHER_DAY.isoformat(), **fields}
    status, answer = post(client, body)
    assert status == 200
    assert (answer["segment"], answer["basis"], answer["voucher_amount"]) == (
        segment,
        "country",
        int(LATVIA_FALLBACK),
    )
    strict = post(client, {**body, "strict": True})
    assert_error(strict, 404, strict_code, strict_field)
    # The fallback says why in the words strict mode refuses with.
    assert (
        f"{answer['fallback_reason']} (strict mode: no fallback)" == strict[1]["error"]["message"]
    )
    assert post(client, {**body, "strict": False}) == (status, answer)


def test_an_amount_that_is_not_whole_stays_a_float(client, published):
    _, answer = post(
        client, {"country_code": "Latvia", "segment_name": "frequent_segment", "total_orders": "7"}
    )
    assert (answer["voucher_amount"], answer["basis"]) == (7.5, "segment")


@pytest.mark.parametrize("name", ["peru", "  PERU\t", "\nPeRu "])
def test_country_code_is_matched_like_the_pipeline(client, published, name):
    status, answer = post(
        client,
        {
            "country_code": name,
            "segment_name": "frequent_segment",
            "total_orders": 1,
            "customer_id": "c-1",
        },
    )
    assert (status, answer["country_code"], answer["customer_id"]) == (200, "Peru", "c-1")


def test_an_unpublished_country_is_a_404_naming_the_published_ones(client, published):
    status, body = post(client, {**SAMPLE, "country_code": "Narnia"})
    assert_error((status, body), 404, "country_not_published", "country_code")
    assert "Narnia" in body["error"]["message"]
    assert all(name in body["error"]["message"] for name in ("China", "Latvia", "Peru"))


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"{bad json", 400, "malformed_json", None),
        (b"", 400, "malformed_json", None),
        (b"[]", 400, "malformed_json", None),
        (b'{"country_code": NaN}', 400, "malformed_json", None),
        (b"{" * 30000, 400, "malformed_json", None),
        ({**SAMPLE, "country_code": None}, 400, "missing_field", "country_code"),
        (
            {k: v for k, v in SAMPLE.items() if k != "segment_name"},
            400,
            "missing_field",
            "segment_name",
        ),
        (
            {**SAMPLE, "segment_name": "monetary_segment"},
            400,
            "unknown_segment_name",
            "segment_name",
        ),
        ({**SAMPLE, "last_order_ts": None}, 400, "missing_field", "last_order_ts"),
        (
            {**SAMPLE, "segment_name": "frequent_segment", "total_orders": None},
            400,
            "missing_field",
            "total_orders",
        ),
        ({**SAMPLE, "total_orders": -2}, 400, "impossible_value", "total_orders"),
        ({**SAMPLE, "total_orders": "2.5"}, 400, "invalid_field", "total_orders"),
        ({**SAMPLE, "last_order_ts": "yesterday"}, 400, "invalid_field", "last_order_ts"),
        ({**SAMPLE, "first_order_ts": "2018-06-01"}, 400, "impossible_value", "first_order_ts"),
        ({**SAMPLE, "timestamp": "2018-05-02"}, 400, "impossible_value", "last_order_ts"),
        ({**SAMPLE, "strict": "yes"}, 400, "invalid_field", "strict"),
        ({**SAMPLE, "country_code": "Atlantis"}, 404, "country_not_published", "country_code"),
        ({**SAMPLE, "pad": "x" * 70000}, 413, "body_too_large", None),
    ],
)
def test_each_error_code(client, published, body, status, code, field):
    assert_error(post(client, body), status, code, field)


def test_a_form_or_text_body_gets_the_json_error_not_a_415(client, published):
    response = client.http.post(
        "/voucher", headers={"Content-Type": "text/plain"}, body=b"country_code=Peru"
    )
    assert response.status_code == 400
    assert json.loads(response.body)["error"]["code"] == "malformed_json"


INJECTIONS = [
    "Peru'; DROP TABLE voucher_selection; --",
    "' OR '1'='1",
    'peru"); DELETE FROM published_country; --',
    "1; TRUNCATE runs CASCADE",
]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_sql_injection_in_every_field_is_a_clean_refusal(client, published, injection):
    before = table_counts(published)
    cases = [
        ("country_code", 404, "country_not_published"),
        ("segment_name", 400, "unknown_segment_name"),
        ("total_orders", 400, "invalid_field"),
        ("last_order_ts", 400, "invalid_field"),
        ("first_order_ts", 400, "invalid_field"),
        ("timestamp", 400, "invalid_field"),
        ("strict", 400, "invalid_field"),
    ]
    for field, status, code in cases:
        assert_error(post(client, {**SAMPLE, field: injection}), status, code, field)
    status, answer = post(client, {**SAMPLE, "customer_id": injection})  # any string id is fine
    assert (status, answer["customer_id"]) == (200, injection)
    status, body = get(client, "/selection_criteria?country=" + quote(injection))
    assert (status, body["error"]["code"]) == (404, "country_not_published")
    assert table_counts(published) == before
    assert post(client, SAMPLE)[1]["voucher_amount"] == 2640


def test_selection_criteria_lists_every_published_country_with_its_run(client, published):
    status, body = get(client, "/selection_criteria")
    assert status == 200
    assert [c["country_code"] for c in body["countries"]] == ["China", "Latvia", "Peru"]
    peru = body["countries"][2]
    assert peru["run"]["run_id"] == sample_runs.FIRST_RUN
    assert peru["run"]["source"] == {
        "bucket": "voucher-raw",
        "key": f"incoming/{sample_runs.FIRST_RUN}.parquet",
        "etag": f"etag-{sample_runs.FIRST_RUN}",
    }
    stats = sample_runs.FIRST.countries[0]
    assert peru["rows"] == {
        "in": stats.rows_in,
        "kept": stats.rows_kept,
        "rejected": stats.rows_rejected,
        "rejected_by_reason": stats.rejected_by_reason,
        "unsegmented": stats.unsegmented,
    }
    assert peru["fallback"]["voucher_amount"] == int(PERU_FALLBACK)
    rules = {r["segment_name"]: r for r in peru["segment_rules"]}
    assert set(rules) == {rule.name for rule in SEGMENT_RULES}
    for rule in SEGMENT_RULES:
        assert rules[rule.name]["measure"] == rule.measure
        assert [
            (s["segment"], s["lower_bound"], s["upper_bound"], s["voucher_amount"])
            for s in rules[rule.name]["segments"]
        ] == [
            (seg.label, seg.lower, seg.upper, PERU[rule.name, seg.label]) for seg in rule.segments
        ]


def test_selection_criteria_for_one_country_shows_segments_without_history(client, published):
    status, body = get(client, "/selection_criteria?country=%20LATVIA")
    assert (status, [c["country_code"] for c in body["countries"]]) == (200, ["Latvia"])
    segments = {
        (r["segment_name"], s["segment"]): s
        for r in body["countries"][0]["segment_rules"]
        for s in r["segments"]
    }
    assert segments["frequent_segment", "14-37"] == {
        "segment": "14-37",
        "lower_bound": 14,
        "upper_bound": 37,
        "voucher_amount": None,
        "voucher_rows": 0,
        "segment_rows": 0,
        "share": None,
        "runner_up": None,
        "lead": None,
        "below_min_rows": True,
        "last_changed": None,
    }  # no rows: fewer than MIN_SEGMENT_ROWS
    assert segments["frequent_segment", "5-13"]["voucher_amount"] == 7.5
    assert segments["recency_segment", "180+"]["upper_bound"] is None


def test_selection_criteria_errors(client, published):
    assert_error(
        get(client, "/selection_criteria?country=Narnia"), 404, "country_not_published", "country"
    )
    assert_error(get(client, "/selection_criteria?country=%20"), 400, "invalid_field", "country")


def test_the_api_uses_the_rules_the_published_run_used(client, db):
    """A run published with other bounds answers with them: the API never re-derives rules."""
    narrow = replace(SEGMENT_RULES[0], segments=(replace(SEGMENT_RULES[0].segments[0], upper=2),))
    sample_runs.publish(db, "run-narrow", sample_runs.FIRST, rules=(narrow, SEGMENT_RULES[1]))
    body = {"country_code": "Peru", "segment_name": "frequent_segment"}
    assert post(client, {**body, "total_orders": 2})[1]["segment"] == "0-4"
    assert post(client, {**body, "total_orders": 3})[1]["segment"] is None


def test_nothing_published_yet(client, db):
    assert_error(post(client, SAMPLE), 404, "country_not_published", "country_code")
    assert get(client, "/selection_criteria") == (200, {"countries": []})
    status, health = get(client, "/health")
    assert (status, health["status"], health["database"]) == (503, "unavailable", "reachable")


def test_health_reports_the_database_and_the_published_runs(client, published):
    status, body = get(client, "/health")
    assert status == 200
    assert (body["status"], body["database"]) == ("ok", "reachable")
    assert body["loaded_at"]
    assert [(p["country_code"], p["run_id"]) for p in body["published"]] == [
        (name, sample_runs.FIRST_RUN) for name in ("China", "Latvia", "Peru")
    ]


def test_an_unexpected_failure_is_a_generic_500_with_details_only_in_the_log(client, db, caplog):
    """A run publishing a measure this API cannot compute is a server fault, not the client's."""
    unknown = replace(SEGMENT_RULES[0], name="monetary_segment", measure="monetary")
    sample_runs.publish(db, "run-new-measure", sample_runs.FIRST, rules=(*SEGMENT_RULES, unknown))
    with caplog.at_level(logging.ERROR):
        status, body = post(client, {**SAMPLE, "segment_name": "monetary_segment"})
    assert_error((status, body), 500, "internal_error", None)
    assert "monetary" not in json.dumps(body)
    assert "KeyError: 'monetary'" in caplog.text


#: The pages, and an element each must have.
PAGES = {
    "/search_voucher": '<form id="voucher-form"',
    "/selection": '<div id="country">',
    "/runs/page": '<div id="runs"',
}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_self_contained_html(client, path):
    """Nothing loaded from anywhere; links (relative: a stage's path prefix in the cloud) only
    to the other pages; what the pages share (``pages.js``, ``pages.css``) inlined once each."""
    response = client.http.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = response.body.decode()
    assert PAGES[path] in page
    for reference in ("src=", "@import", "url(", "<link"):
        assert reference not in page, f"the page loads {reference}... (it must work offline)"
    links = re.findall(r'<a href="([^"]*)"', page)
    assert page.count("href=") == len(links) > 0
    assert {urlsplit(urljoin(f"http://api{path}", link)).path for link in links} <= set(PAGES)
    assert "/* include" not in page
    for shared in ("pages.js", "pages.css"):
        assert page.count(static_text(shared)) == 1


def test_the_openapi_document_is_valid_and_describes_every_route(client):
    status, document = get(client, "/openapi.json")
    assert status == 200
    validate(document)
    routes = {(path, method.lower()) for path, entry in app.routes.items() for method in entry}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == routes
    schema = document["components"]["schemas"]["VoucherRequest"]["properties"]
    assert {schema[f]["pattern"] for f in ("last_order_ts", "first_order_ts", "timestamp")} == {
        TIMESTAMP_PATTERN
    }
    [text] = [t for t in schema["total_orders"]["oneOf"] if t["type"] == "string"]
    assert text["pattern"] == ORDERS_TEXT_PATTERN  # the pipeline's notation, from rules
    [zero] = [
        rule
        for rule in document["components"]["schemas"]["VoucherRequest"]["allOf"]
        if "total_orders" in rule["if"]["properties"]
    ]
    assert zero["if"]["properties"]["total_orders"]["anyOf"][1]["pattern"] == (
        ZERO_ORDERS_TEXT_PATTERN
    )
    assert zero["then"]["properties"] == {
        d: {"type": "null"} for d in ("first_order_ts", "last_order_ts")
    }
    # The handlers' own checks, as the document states them.
    country, detail = document["paths"]["/selection_criteria"]["get"]["parameters"]
    assert country["schema"]["not"] == schema["country_code"]["not"] == {"pattern": BLANK_PATTERN}
    assert detail["schema"]["pattern"] == names_pattern(DETAILS)
    limit, status = document["paths"]["/runs"]["get"]["parameters"]
    assert limit["schema"]["pattern"] == LIMIT_PATTERN
    assert status["schema"]["pattern"] == names_pattern(RUN_STATUSES)
    usage = document["components"]["schemas"]["Usage"]["properties"]
    assert usage["amounts"]["maxItems"] == USAGE_TOP_AMOUNTS
    country_schema = document["components"]["schemas"]["CountryCriteria"]["properties"]
    assert country_schema["recent_runs"]["maxItems"] == RECENT_RUNS
    on_disk = REPO_ROOT / "chalicelib/api/static/openapi.json"
    assert json.loads(on_disk.read_text()) == document


def test_health_tells_an_anonymous_caller_only_its_status_where_the_stage_keys_routes(
    client, published, monkeypatch
):
    status, full = get(client, "/health")
    assert status == 200 and {"database", "published"} <= set(full)
    monkeypatch.setenv("API_KEY_REQUIRED", "true")  # as prod's stage sets it
    assert get(client, "/health") == (200, {"status": "ok"})
