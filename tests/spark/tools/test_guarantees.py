"""The benchmark-only builds switch off exactly the guarantee they name, and only inside."""

from __future__ import annotations

import pytest

from benchmarks.guarantees import GUARANTEES, switched_off
from glue_jobs import transforms as t


def _keys_and_numbers(spark):
    df = spark.createDataFrame(
        [("\u2003Peru\t", "3d"), (" chile ", " 12 "), ("\u3000Latvia", "0x1p2")],
        "country_code string, total_orders string",
    )
    rows = df.select(
        t.country_key("country_code").alias("key"), t._number(df, "total_orders").alias("n")
    ).collect()
    return [(r["key"], r["n"]) for r in rows]


def test_each_switch_turns_off_its_guarantee_alone_and_is_undone_after(spark):
    kept = [("peru", None), ("chile", 12.0), ("latvia", None)]
    assert _keys_and_numbers(spark) == kept
    with switched_off("unicode_key"):  # ASCII whitespace only: the em and ideographic spaces stay
        assert _keys_and_numbers(spark) == [
            ("\u2003peru", None),
            ("chile", 12.0),
            ("\u3000latvia", None),
        ]
    with switched_off("strict_text"):  # Spark's casts read "3d" and hexadecimal notation
        assert _keys_and_numbers(spark) == [("peru", 3.0), ("chile", 12.0), ("latvia", 4.0)]
    with switched_off(*GUARANTEES):
        assert _keys_and_numbers(spark) == [
            ("\u2003peru", 3.0),
            ("chile", 12.0),
            ("\u3000latvia", 4.0),
        ]
    assert _keys_and_numbers(spark) == kept


def test_an_unknown_guarantee_is_refused_and_nothing_is_switched():
    with pytest.raises(KeyError), switched_off("no_such_promise"):
        pass
    assert t.country_key.__module__ == "glue_jobs.transforms"
