"""Schemathesis hooks for the one rule of ``POST /voucher`` that JSON Schema cannot state: dates
in order (``first_order_ts`` <= ``last_order_ts`` <= ``timestamp``, or today when it is absent).
The document states it in words; every other constraint, ``total_orders`` text and 0 orders with
no order dates included, is in its schemas. Valid cases are put in date order here, and nothing
else is changed, so that "valid by the document" means valid:

    SCHEMATHESIS_HOOKS=tests.openapi_hooks st run http://127.0.0.1:8000/openapi.json --checks all

Without the hooks, the only failures schemathesis can find are valid cases refused for their
dates (``tests/stack/api/test_http.py::test_without_hooks_only_dates_out_of_order_are_refused``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import schemathesis

DATES = ("first_order_ts", "last_order_ts", "timestamp")


def _utc_date(text: str) -> date | None:
    try:
        moment = datetime.fromisoformat(text)
        return (moment.astimezone(UTC) if moment.tzinfo else moment).date()
    except (ValueError, OverflowError):
        return None


def in_order(body: dict) -> dict:
    """``body`` with its dates given to its date fields in time order (the latest also as
    ``timestamp`` when it is after today)."""
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
    return {**body, **dict(zip(fields, texts, strict=True))}


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and case.operation.label == "POST /voucher" and isinstance(case.body, dict):
        case.body = in_order(case.body)
    return case
