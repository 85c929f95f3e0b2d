"""The SPEC's rules written again in plain Python, for the property tests: it shares nothing with
the job but the column names and the reason codes, so a test comparing the two catches a job that
drifts from the SPEC.

Rows are dicts of the six input columns holding what a parquet reader gives (text, numbers,
``Decimal``, dates, naive or aware datetimes, ``None``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

from chalicelib.rules import INPUT_COLUMNS

COLUMNS = INPUT_COLUMNS  # the file's schema, not a rule: shared with the job
#: Unicode's White_Space property (PropList.txt): what the SPEC trims from text.
UNICODE_SPACES = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: Decimal notation: sign, digits with an optional fraction (or a fraction alone), exponent.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
MAX_WHOLE = 2**53


def text(value: str) -> str:
    return value.strip(UNICODE_SPACES)


def utc_day(value) -> date | None:
    """The UTC date of a time value: a date, a datetime (naive is UTC), or text with a whole date
    (``YYYY-MM-DD`` then an optional time and offset); None when absent or unreadable."""
    if isinstance(value, str):
        value = text(value)
        if value.count("-") < 2 or value.index("-") == 0:
            return None
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def number(value) -> float | None:
    """A number from a number or from decimal text; None when absent, empty, another notation,
    or NaN."""
    if isinstance(value, str):
        value = text(value)
        if not _DECIMAL.fullmatch(value):
            return None
    if value is None:
        return None
    result = float(value if not isinstance(value, Decimal) else str(value))
    return None if math.isnan(result) else result


def first_failed_rule(row: dict) -> str | None:
    """The SPEC's rules 2 to 6 in order (rule 1, duplicates, needs the other rows)."""
    orders, amount = number(row["total_orders"]), number(row["voucher_amount"])
    voucher, last, first = (
        utc_day(row[c]) for c in ("timestamp", "last_order_ts", "first_order_ts")
    )
    if None in (orders, amount, voucher, last, first):
        return "missing_value"
    whole = math.isfinite(orders) and orders == int(orders) and 0 <= orders <= MAX_WHOLE
    if not whole or amount <= 0 or math.isinf(amount):
        return "invalid_value"
    if orders == 0:
        return "zero_orders_with_order_dates"
    if first > last:
        return "first_after_last"
    if voucher < last:
        return "voucher_before_last_order"
    return None


def same_row(row: dict) -> tuple:
    """What makes two rows exact duplicates (NaN equals NaN)."""
    return tuple(
        "NaN" if isinstance(v, float) and math.isnan(v) else v for v in (row[c] for c in COLUMNS)
    )


def country(row: dict) -> str | None:
    """A row's country key: Unicode whitespace trimmed, lower case; None when it names none."""
    name = row["country_code"]
    return text(name).lower() if isinstance(name, str) and text(name) else None


def outcomes(rows: list[dict], keys: tuple[str, ...] | None) -> dict[str, Counter]:
    """Per country in scope: a Counter of reasons (None: kept), duplicates included."""
    seen, found = set(), {}
    for row in rows:
        key = country(row)
        if key is None or (keys is not None and key not in keys):
            continue
        reason = "duplicate_row" if same_row(row) in seen else first_failed_rule(row)
        seen.add(same_row(row))
        found.setdefault(key, Counter())[reason] += 1
    return found


SEGMENTS = {
    "frequent_segment": [("0-4", 0, 4), ("5-13", 5, 13), ("14-37", 14, 37)],
    "recency_segment": [
        ("30-60", 30, 60),
        ("61-90", 61, 90),
        ("91-120", 91, 120),
        ("121-180", 121, 180),
        ("180+", 181, math.inf),
    ],
}


def segment(name: str, value: int) -> str | None:
    return next((label for label, low, high in SEGMENTS[name] if low <= value <= high), None)


def selections(rows: list[dict], keys: tuple[str, ...] | None) -> tuple[dict, dict]:
    """``(country, segment_name, segment) -> (amount, rows, segment rows)`` and
    ``country -> (amount, rows, country rows)``: the most used amount of the kept rows, a tie
    going to the lower amount."""
    seen, per_segment, per_country = set(), {}, {}
    for row in rows:
        key = country(row)
        if key is None or (keys is not None and key not in keys):
            continue
        duplicate = same_row(row) in seen
        seen.add(same_row(row))
        if duplicate or first_failed_rule(row) is not None:
            continue
        amount, orders = number(row["voucher_amount"]), int(number(row["total_orders"]))
        recency = (utc_day(row["timestamp"]) - utc_day(row["last_order_ts"])).days
        per_country.setdefault(key, Counter())[amount] += 1
        for name, value in (("frequent_segment", orders), ("recency_segment", recency)):
            label = segment(name, value)
            if label is not None:
                per_segment.setdefault((key, name, label), Counter())[amount] += 1

    def top(counts: Counter) -> tuple[float, int, int]:
        amount, n = min(counts.items(), key=lambda item: (-item[1], item[0]))
        return amount, n, sum(counts.values())

    return (
        {group: top(c) for group, c in per_segment.items()},
        {group: top(c) for group, c in per_country.items()},
    )
