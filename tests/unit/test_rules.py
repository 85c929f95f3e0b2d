"""The rules module itself: segment bounds at every edge, the notations and settings it parses,
and the round trip through the rows the pipeline publishes (the same rules are checked through
Spark in ``tests/spark/pipeline``)."""

from __future__ import annotations

import pytest

from chalicelib import rules, settings
from chalicelib.rules import SEGMENT_RULES, rules_from_rows, rules_to_rows

#: The SPEC's table of segments, written out independently of the module.
SPEC_SEGMENTS = {
    "frequent_segment": {"0-4": (0, 4), "5-13": (5, 13), "14-37": (14, 37)},
    "recency_segment": {
        "30-60": (30, 60),
        "61-90": (61, 90),
        "91-120": (91, 120),
        "121-180": (121, 180),
        "180+": (181, None),
    },
}


def _expected(name: str, value: int) -> str | None:
    return next(
        (
            label
            for label, (low, high) in SPEC_SEGMENTS[name].items()
            if value >= low and (high is None or value <= high)
        ),
        None,
    )


@pytest.mark.parametrize("rule", SEGMENT_RULES, ids=lambda r: r.name)
def test_every_value_around_every_bound_falls_in_the_segment_the_spec_names(rule):
    bounds = {b for low, high in SPEC_SEGMENTS[rule.name].values() for b in (low, high) if b}
    values = {v + d for v in bounds | {0, 10_000} for d in (-1, 0, 1)}
    for value in sorted(values):
        assert rule.segment_for(value) == _expected(rule.name, value), (rule.name, value)


def test_the_rules_hold_the_spec_segments_and_survive_the_published_rows():
    assert {r.name: {s.label: (s.lower, s.upper) for s in r.segments} for r in SEGMENT_RULES} == (
        SPEC_SEGMENTS
    )
    assert rules_from_rows(list(reversed(rules_to_rows()))) == SEGMENT_RULES


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12", 12.0),
        (" +3.5e1\u3000", 35.0),
        (".5", 0.5),
        ("7.", 7.0),
        ("3d", None),
        ("0x1p2", None),
        ("1_000", None),
        ("NaN", None),
        ("Infinity", None),
        ("\u0661", None),  # ARABIC-INDIC DIGIT ONE
        ("\u200b1", None),  # zero-width space is not whitespace
        ("", None),
    ],
)
def test_number_text_is_read_in_decimal_notation_only(text, number):
    assert rules.decimal_number(text) == number


def test_country_and_column_names_match_trimmed_and_case_folded():
    assert rules.country_key("\u00a0 PERU\u2028") == "peru"
    assert rules.column_key(" COUNTRY_CODE\t") == "country_code"
    assert rules.requested_country_keys(None) == ("peru",)
    assert rules.requested_country_keys(" peru , Latvia,PERU ") == ("peru", "latvia")
    assert rules.requested_country_keys("Peru, ALL") is None
    with pytest.raises(ValueError, match="no country given"):
        rules.requested_country_keys(" , ")


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "x", "\u0662"])
def test_min_segment_rows_refuses_anything_but_a_whole_number_of_at_least_one(text):
    with pytest.raises(settings.SettingError, match="MIN_SEGMENT_ROWS"):
        settings.MIN_SEGMENT_ROWS.value_of(text)


def test_min_segment_rows_defaults_to_the_rules_and_reads_whole_numbers():
    read = settings.MIN_SEGMENT_ROWS.value_of
    assert read(None) == read("") == rules.MIN_SEGMENT_ROWS == 1
    assert read("25") == 25
