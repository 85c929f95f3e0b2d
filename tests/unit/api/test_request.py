"""Parsing and validation of voucher requests (pure: no database)."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from chalicelib.api.errors import ApiError
from chalicelib.api.request import MAX_BODY_BYTES, parse_voucher_request
from chalicelib.rules import DECIMAL_NUMBER, WHITESPACE
from infra.local.paths import REPO_ROOT

TODAY = date(2026, 11, 24)
BASE = {"country_code": "Peru", "segment_name": "frequent_segment"}


def parse(**fields):
    return parse_voucher_request(json.dumps({**BASE, **fields}), TODAY)


def refusal(raw) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_voucher_request(raw, TODAY)
    return caught.value


@pytest.mark.parametrize(
    "value", [15, 15.0, "15", "015", "15.0", " 15 ", "\u00a015\u3000", "1.5e1", "+15", "15."]
)
def test_total_orders_accepts_whole_numbers_and_their_decimal_text_as_the_pipeline_reads_it(
    value,
):
    assert parse(total_orders=value).total_orders == 15


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "3d",
        "0x1p2",
        "1_000",
        "NaN",
        "Infinity",
        "١٥",
        "15.5",
        2.5,
        True,
        [15],
        {"n": 15},
        2**53 + 1,
        "9" * 40,
        1e300,
        "1" * 101,
    ],
)
def test_total_orders_refuses_anything_else(value):
    error = refusal(json.dumps({**BASE, "total_orders": value}))
    assert (error.status, error.code, error.field) == (400, "invalid_field", "total_orders")


@pytest.mark.parametrize("value", [-1, -3.0, "-1", " -3.0 "])
def test_negative_orders_are_impossible(value):
    error = refusal(json.dumps({**BASE, "total_orders": value}))
    assert (error.code, error.field) == ("impossible_value", "total_orders")


@pytest.mark.parametrize(
    ("value", "utc_date"),
    [
        ("2018-05-03", date(2018, 5, 3)),
        ("2018-05-03 00:00:00", date(2018, 5, 3)),
        ("2018-05-03 23:59:59.999999", date(2018, 5, 3)),
        ("2018-05-03T10:00:00Z", date(2018, 5, 3)),
        ("2018-05-03T10:00", date(2018, 5, 3)),
        ("2018-05-03T23:30:00-05:00", date(2018, 5, 4)),  # 04:30 UTC the next day
        ("2018-05-03T01:00:00+0300", date(2018, 5, 2)),
        ("2018-05-03T01:00:00+03", date(2018, 5, 2)),
    ],
)
def test_timestamps_in_the_three_shapes_count_by_their_utc_date(value, utc_date):
    assert parse(last_order_ts=value, timestamp="2019-01-01").last_order == utc_date


@pytest.mark.parametrize(
    ("value", "utc_date"),
    [
        ("0001-01-01", date(1, 1, 1)),
        ("0001-01-01T00:00:00Z", date(1, 1, 1)),
        ("1500-03-01 10:00:00", date(1500, 3, 1)),
        ("9999-12-31T23:59:59", date(9999, 12, 31)),
    ],
)
def test_dates_of_any_era_python_postgresql_and_json_share_are_dates(value, utc_date):
    """Years 1 to 9999: a sentinel 0001-01-01 or a first order in 1500 is a date like any other."""
    request = parse(first_order_ts=value, last_order_ts=None, timestamp="9999-12-31T23:59:59")
    assert request.first_order == utc_date


@pytest.mark.parametrize(
    "value", ["0000-01-01", "0000-00-00", "10000-01-01", "-0001-01-01", "0001-01-01T00:00:00+01:00"]
)  # before year 1 in UTC
def test_dates_outside_years_1_to_9999_are_refused_naming_the_field(value):
    error = refusal(json.dumps({**BASE, "first_order_ts": value}))
    assert (error.status, error.code, error.field) == (400, "invalid_field", "first_order_ts")


@pytest.mark.parametrize(
    "value",
    [
        "03/05/2018",
        "2018-5-3",
        "20180503",
        "2018-05-03x00:00:00",
        "2018-05-03\n",
        "2018-02-30",
        "2018-05-03T24:00:00",
        "2018-05-03 00:00:00 UTC",
        "",
        20180503,
        ["2018-05-03"],
        "２０１８-05-03",
    ],  # fullwidth digits are not ASCII digits
)
def test_malformed_or_unreal_timestamps_are_refused(value):
    error = refusal(json.dumps({**BASE, "last_order_ts": value}))
    assert (error.status, error.code, error.field) == (400, "invalid_field", "last_order_ts")


def test_absent_timestamp_is_today_and_null_means_absent():
    request = parse(timestamp=None, first_order_ts=None, total_orders=None, strict=None)
    assert (request.moment, request.first_order, request.total_orders, request.strict) == (
        TODAY,
        None,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"first_order_ts": "2018-05-04", "last_order_ts": "2018-05-03 23:00"}, "first_order_ts"),
        ({"last_order_ts": "2018-05-04", "timestamp": "2018-05-03T23:59:59"}, "last_order_ts"),
        ({"first_order_ts": "2018-05-04", "timestamp": "2018-05-03"}, "first_order_ts"),
        ({"last_order_ts": "2026-11-25"}, "last_order_ts"),  # after today
        ({"total_orders": 0, "last_order_ts": "2018-05-03"}, "total_orders"),
    ],
)
def test_impossible_combinations_are_refused(fields, field):
    error = refusal(json.dumps({**BASE, **fields}))
    assert (error.status, error.code, error.field) == (400, "impossible_value", field)


def test_same_day_orders_and_voucher_are_possible():
    request = parse(
        first_order_ts="2018-05-03 08:00:00",
        last_order_ts="2018-05-03",
        timestamp="2018-05-03 07:00:00",
        total_orders=1,
    )
    assert request.first_order == request.last_order == request.moment == date(2018, 5, 3)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "malformed_json"),
        (b"   ", "malformed_json"),
        (b"{bad", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'"Peru"', "malformed_json"),
        (b'{"country_code": "Peru", "total_orders": NaN}', "malformed_json"),
        (b'{"total_orders": Infinity}', "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b"[" * 20000 + b"]" * 20000, "malformed_json"),
        (b'{"customer_id": 1' + b"0" * 5000 + b"}", "malformed_json"),
    ],
)
def test_bodies_that_are_not_a_json_object(raw, code):
    error = refusal(raw)
    assert (error.status, error.code, error.field) == (400, code, None)


def test_a_body_over_64_kib_is_refused_before_parsing():
    raw = json.dumps({**BASE, "pad": "x" * MAX_BODY_BYTES})
    error = refusal(raw)
    assert (error.status, error.code) == (413, "body_too_large")
    assert str(MAX_BODY_BYTES) in error.message


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"country_code": None}, "missing_field", "country_code"),
        ({"segment_name": None}, "missing_field", "segment_name"),
        ({"country_code": 51}, "invalid_field", "country_code"),
        ({"country_code": " \t"}, "invalid_field", "country_code"),
        ({"segment_name": ["recency_segment"]}, "invalid_field", "segment_name"),
        ({"strict": "true"}, "invalid_field", "strict"),
        ({"strict": 1}, "invalid_field", "strict"),
        ({"customer_id": 1.5}, "invalid_field", "customer_id"),
        ({"customer_id": True}, "invalid_field", "customer_id"),
        ({"customer_id": ""}, "invalid_field", "customer_id"),
        ({"customer_id": "c" * 201}, "invalid_field", "customer_id"),
    ],
)
def test_missing_or_ill_typed_fields_name_the_field(fields, code, field):
    error = refusal(json.dumps({**BASE, **fields}))
    assert (error.status, error.code, error.field) == (400, code, field)
    assert field in error.message


def test_a_valid_request_keeps_every_field():
    request = parse(
        customer_id="c-9",
        total_orders="7",
        last_order_ts="2018-05-03",
        first_order_ts="2017-01-01T00:00:00Z",
        timestamp="2018-06-01",
        strict=True,
    )
    assert request.customer_id == "c-9"
    assert request.country_code == "Peru"
    assert request.total_orders == 7
    assert (request.first_order, request.last_order, request.moment) == (
        date(2017, 1, 1),
        date(2018, 5, 3),
        date(2018, 6, 1),
    )
    assert request.strict is True


# ------------------------------------------------- the OpenAPI document says what is accepted

DOCUMENT = json.loads((REPO_ROOT / "chalicelib/api/static/openapi.json").read_text())
REQUEST_SCHEMA = Draft202012Validator(DOCUMENT["components"]["schemas"]["VoucherRequest"])
SPACES = "".join(WHITESPACE)


def handler_accepts(body: dict) -> bool:
    try:
        parse_voucher_request(json.dumps(body), TODAY)
    except ApiError:
        return False
    return True


#: Number text as people and exporters write it, whole or not, and what lies next to it.
NUMBER_TEXT = st.builds(
    lambda pad, sign, digits, point, fraction, exponent, end: (
        pad + sign + digits + point + fraction + exponent + end
    ),
    st.text(SPACES + "\u200b", max_size=2),
    st.sampled_from(["", "", "+", "-"]),
    st.text("0000123456789", max_size=18),
    st.sampled_from(["", ".", "."]),
    st.text("000000001235", max_size=8),
    st.one_of(
        st.just(""),
        st.builds(
            "".join,
            st.tuples(
                st.sampled_from("eE"),
                st.sampled_from(["", "+", "-"]),
                st.text("0123456789", min_size=1, max_size=3),
            ),
        ),
    ),
    st.text(SPACES + "x", max_size=2),
)


@pytest.mark.parametrize(
    "text",
    [
        ".225\u2000\u2028",  # what schemathesis sent: the document allowed it, the handler refused
        "1.5e1",
        "1.500000e+01",
        " 15 ",
        "15.",
        "0.",
        ".0",
        "-0",
        "1.5",
        "150e-1",
        "1e-400",
        "1.0000000000000001",
        "9007199254740992",
        "9007199254740993",
        "0009007199254740992.000",
        "999999999999999e0",
        "1e15",
        "0e999",
        "1" * 101,
    ],
)
def test_the_document_accepts_exactly_the_total_orders_text_the_handler_accepts(text):
    body = {**BASE, "total_orders": text}
    assert REQUEST_SCHEMA.is_valid(body) == handler_accepts(body)


#: Order dates a request may give with its ``total_orders`` (in order, before ``TODAY``).
ORDER_DATES = [
    {},
    {"last_order_ts": "2018-05-03"},
    {"first_order_ts": "2017-05-03 10:00:00"},
    {"first_order_ts": "2017-05-03", "last_order_ts": "2018-05-03T00:00:00Z"},
]


@settings(max_examples=2_000, deadline=None)
@given(
    orders=st.one_of(
        NUMBER_TEXT,
        st.text(max_size=12),
        st.sampled_from([0, 0.0, -0.0, 1, 15.0, 2.5, -1, 2**53, 2**53 + 1, True]),
    ),
    dates=st.sampled_from(ORDER_DATES),
)
def test_the_document_and_the_handler_agree_on_any_total_orders_and_order_dates(orders, dates):
    """Parsing is where the handler judges ``total_orders`` (a segment's needs, null included,
    come later: ``tests/stack/api/test_routes.py``)."""
    body = {**BASE, "total_orders": orders, **dates}
    assert REQUEST_SCHEMA.is_valid(body) == handler_accepts(body)


def stated_rule(text: str) -> bool:
    """``total_orders`` text as the document's description states it, in decimal arithmetic:
    the notation, a whole value, at most 2^53, and with an exponent (0 to 15) below 10^15."""
    number = text.strip(SPACES)
    if len(text) > 100 or not re.fullmatch(DECIMAL_NUMBER, number) or number.startswith("-"):
        return False
    value, (_, _, exponent) = Decimal(number), number.lower().partition("e")
    if value != value.to_integral_value():
        return False
    if exponent:
        return not exponent.startswith("-") and int(exponent) <= 15 and value < 10**15
    return value <= 2**53


def text_pattern(*schemas: dict) -> str:
    [pattern] = [s["pattern"] for s in schemas if s.get("type") == "string"]
    return pattern


@settings(max_examples=3_000, deadline=None)
@given(text=NUMBER_TEXT)
def test_the_documents_patterns_are_the_rules_its_descriptions_state(text):
    schema = DOCUMENT["components"]["schemas"]["VoucherRequest"]
    orders = text_pattern(*schema["properties"]["total_orders"]["oneOf"])
    [zero] = [
        rule["if"]["properties"]["total_orders"]["anyOf"]
        for rule in schema["allOf"]
        if "total_orders" in rule["if"]["properties"]
    ]
    whole = stated_rule(text)
    assert bool(re.search(orders, text)) == whole
    assert bool(re.search(text_pattern(*zero), text)) == (
        whole and Decimal(text.strip(SPACES)) == 0
    )
