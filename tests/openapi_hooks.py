"""Schemathesis hooks for the rules of ``POST /voucher`` that JSON Schema cannot state: dates in
order (``first_order_ts`` <= ``last_order_ts`` <= ``timestamp``, or today when it is absent), no
order dates with 0 orders, and ``total_orders`` text whose value is whole, non-negative and at
most 2^53 (a pattern can state the notation, not the value: ``"1.5e1"`` is 15). The document
states them in words; every other constraint is in its schemas. Valid cases are put in line with
these three here, and nothing else, so that "valid by the document" means valid:

    SCHEMATHESIS_HOOKS=tests.openapi_hooks st run http://127.0.0.1:8000/openapi.json --checks all
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import schemathesis

from chalicelib.rules import MAX_WHOLE_ORDERS, decimal_number

DATES = ("first_order_ts", "last_order_ts", "timestamp")


def _utc_date(text: str) -> date | None:
    try:
        moment = datetime.fromisoformat(text)
        return (moment.astimezone(UTC) if moment.tzinfo else moment).date()
    except (ValueError, OverflowError):
        return None


def _whole_orders(text: str) -> str:
    """``text`` when its value is a number of orders, else that value made one."""
    value = decimal_number(text)
    if value is None or (value.is_integer() and 0 <= value <= MAX_WHOLE_ORDERS):
        return text
    return str(int(min(abs(value), MAX_WHOLE_ORDERS)))


def _is_zero(orders: object) -> bool:
    value = decimal_number(orders) if isinstance(orders, str) else orders
    return not isinstance(value, bool) and isinstance(value, int | float) and value == 0


def in_order(body: dict) -> dict:
    """``body`` with whole orders, its dates given to its date fields in time order (the latest
    also as ``timestamp`` when it is after today), and 1 order where 0 came with order dates."""
    if isinstance(body.get("total_orders"), str):
        body = {**body, "total_orders": _whole_orders(body["total_orders"])}
    # A date whose offset moves it past the calendar's end (9999-12-31T23:00-05:00) keeps its day.
    given = [
        (f, body[f] if _utc_date(body[f]) else body[f][:10])
        for f in DATES
        if isinstance(body.get(f), str)
    ]
    dated = [(_utc_date(text), text) for _, text in given]
    texts = [text for _, text in sorted(dated)]
    fields = [f for f, _ in given]
    if dated and "timestamp" not in fields and max(dated)[0] > datetime.now(UTC).date():
        fields, texts = [*fields, "timestamp"], [*texts, texts[-1]]  # recency up to that date
    ordered = {**body, **dict(zip(fields, texts, strict=True))}
    if (
        dated
        and _is_zero(ordered.get("total_orders"))
        and (ordered.get("first_order_ts") or ordered.get("last_order_ts"))
    ):
        ordered["total_orders"] = 1
    return ordered


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and case.operation.label == "POST /voucher" and isinstance(case.body, dict):
        case.body = in_order(case.body)
    return case
