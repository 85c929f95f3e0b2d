"""The one rules definition: countries, cleaning reason codes and segment bounds.

Pure Python with no third-party imports. The Glue job applies these rules, publishes the segment
rules with every run (table ``segment_rules``), and the API resolves segments from what was
published, so the pipeline, the criteria endpoint and the voucher answer can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_COUNTRIES = ("Peru",)
ALL_COUNTRIES = "all"

#: "Whitespace", wherever text is trimmed (country names, number and time text), in Spark and in
#: Python alike: every character of Unicode's White_Space property (tab, line feed, vertical tab,
#: form feed, carriage return, space, next line, no-break space, ogham space mark, the spaces
#: U+2000 to U+200A, line and paragraph separators, narrow no-break, medium mathematical and
#: ideographic spaces). Zero-width characters (U+200B, U+FEFF) are not whitespace.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

#: Text is a number only in decimal notation: optional sign, digits with an optional fraction (or
#: a fraction alone), optional exponent; whitespace around it is trimmed first. Anything else
#: (``3d``, ``0x1p2``, ``1_000``, ``NaN``, ``Infinity``, non-ASCII digits) is unparseable. The
#: same pattern (Java and Python regular expressions agree on it) in the job and the API.
DECIMAL_NUMBER = r"[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?"

#: The six input columns; an exact duplicate is a row equal to another on all of them.
INPUT_COLUMNS = (
    "timestamp",
    "country_code",
    "last_order_ts",
    "first_order_ts",
    "total_orders",
    "voucher_amount",
)

#: Longest country name a run processes: a country's name also names its folder in the lake (a
#: path segment holds 255 bytes: ``country_key=`` and up to 4 bytes per character). A longer
#: ``country_code`` in scope fails the run, naming it, before anything is written.
MAX_COUNTRY_CHARS = 60

#: The fewest kept rows a segment needs for its own selection to be served (``MIN_SEGMENT_ROWS``, a
#: rule setting published with each run); below it the API answers the country's fallback.
MIN_SEGMENT_ROWS = 1


#: Largest ``total_orders`` accepted as a whole number (beyond it a double is not exact).
MAX_WHOLE_ORDERS = 2**53

#: Cleaning reasons in the order they are applied: a row is rejected by the first one it fails.
REASONS: dict[str, str] = {
    "duplicate_row": "an exact duplicate (all six columns) of a row already seen; one copy is kept",
    "missing_value": "total_orders, voucher_amount, timestamp, last_order_ts or first_order_ts "
    "is null, empty or unparseable",
    "invalid_value": "total_orders negative or not a whole number; voucher_amount <= 0 or infinite",
    "zero_orders_with_order_dates": "total_orders = 0 although the customer has order dates",
    "first_after_last": "the date of first_order_ts is later than the date of last_order_ts",
    "voucher_before_last_order": "the voucher's date (timestamp) is earlier than the date of "
    "last_order_ts",
}
REASON_CODES = tuple(REASONS)


def country_key(name: str) -> str:
    """The matching key of a country name: whitespace trimmed, case folded (lower case)."""
    return name.strip(WHITESPACE).lower()


def column_key(name: str) -> str:
    """The input column a stored column name stands for (one of ``INPUT_COLUMNS`` when it is
    one): names are matched like country names, case and surrounding whitespace ignored, as
    Spark, Athena and the Glue Data Catalog match column names (``COUNTRY_CODE`` is
    ``country_code``)."""
    return country_key(name)


def decimal_number(text: str) -> float | None:
    """The number a text holds in decimal notation (``DECIMAL_NUMBER``), else ``None``."""
    trimmed = text.strip(WHITESPACE)
    return float(trimmed) if re.fullmatch(DECIMAL_NUMBER, trimmed) else None


def requested_country_keys(countries: str | None) -> tuple[str, ...] | None:
    """Keys of a countries argument (``Peru``, ``all``, ``Peru,Latvia``); ``None``: all."""
    names = [
        c for c in (countries or ",".join(DEFAULT_COUNTRIES)).split(",") if c.strip(WHITESPACE)
    ]
    if any(country_key(c) == ALL_COUNTRIES for c in names):
        return None
    if not names:
        raise ValueError("no country given: use a name such as Peru, a list Peru,Latvia, or all")
    return tuple(dict.fromkeys(country_key(c) for c in names))


@dataclass(frozen=True)
class Segment:
    """One labelled range with inclusive bounds; ``upper`` ``None`` means unbounded."""

    label: str
    lower: int
    upper: int | None

    def contains(self, value: int) -> bool:
        return value >= self.lower and (self.upper is None or value <= self.upper)


@dataclass(frozen=True)
class SegmentRule:
    """How one ``segment_name`` splits one measure of a customer into segments."""

    name: str
    measure: str
    description: str
    segments: tuple[Segment, ...]

    def segment_for(self, value: int) -> str | None:
        """The label of the segment holding ``value``, or ``None`` when no range does."""
        return next((s.label for s in self.segments if s.contains(value)), None)


SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule(
        name="frequent_segment",
        measure="frequency",
        description="total_orders: orders placed before the voucher",
        segments=(Segment("0-4", 0, 4), Segment("5-13", 5, 13), Segment("14-37", 14, 37)),
    ),
    SegmentRule(
        name="recency_segment",
        measure="recency_days",
        description="calendar days from the date of last_order_ts to the date of the voucher",
        segments=(
            Segment("30-60", 30, 60),
            Segment("61-90", 61, 90),
            Segment("91-120", 91, 120),
            Segment("121-180", 121, 180),
            Segment("180+", 181, None),
        ),
    ),
)


def rules_to_rows(rules: tuple[SegmentRule, ...] = SEGMENT_RULES) -> list[dict[str, Any]]:
    """Flatten rules into ``segment_rules`` table rows."""
    return [
        {
            "segment_name": rule.name,
            "measure": rule.measure,
            "description": rule.description,
            "position": position,
            "segment": seg.label,
            "lower_bound": seg.lower,
            "upper_bound": seg.upper,
        }
        for rule in rules
        for position, seg in enumerate(rule.segments)
    ]


def rules_from_rows(rows: list[dict[str, Any]]) -> tuple[SegmentRule, ...]:
    """Rebuild rules from ``segment_rules`` rows (the inverse of :func:`rules_to_rows`)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["segment_name"], r["position"])):
        by_name.setdefault(row["segment_name"], []).append(row)
    return tuple(
        SegmentRule(
            name=name,
            measure=group[0]["measure"],
            description=group[0]["description"],
            segments=tuple(
                Segment(r["segment"], r["lower_bound"], r["upper_bound"]) for r in group
            ),
        )
        for name, group in by_name.items()
    )
