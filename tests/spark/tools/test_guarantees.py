"""The benchmark-only builds switch off exactly the guarantee they name, and only inside."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks import bench_pipeline
from benchmarks.guarantees import GUARANTEES, switched_off
from glue_jobs import transforms as t

#: Per row: a padded country name, number text, time text that Spark's casts read but the rules
#: refuse or trim differently.
ROWS = [
    ("\u2003Peru\t", "3d", "2018"),
    (" chile ", " 12 ", "2018-05-01"),
    ("\u3000Latvia", "0x1p2", ""),
]
Y2018, MAY_1 = dt.datetime(2018, 1, 1), dt.datetime(2018, 5, 1)


def _read(spark):
    df = spark.createDataFrame(ROWS, "country_code string, total_orders string, timestamp string")
    rows = df.select(
        t.country_key("country_code").alias("key"),
        t._number(df, "total_orders").alias("n"),
        t._timestamp(df, "timestamp").alias("ts"),
    ).collect()
    return [(r["key"], r["n"], r["ts"]) for r in rows]


def test_each_switch_turns_off_its_guarantee_alone_and_is_undone_after(spark):
    kept = [("peru", None, None), ("chile", 12.0, MAY_1), ("latvia", None, None)]
    assert _read(spark) == kept
    with switched_off("unicode_key"):  # ASCII whitespace only: the em and ideographic spaces stay
        assert _read(spark) == [
            ("\u2003peru", None, None),
            ("chile", 12.0, MAY_1),
            ("\u3000latvia", None, None),
        ]
    with switched_off("strict_text"):  # Spark's casts read "3d", hexadecimal and a bare year
        assert _read(spark) == [("peru", 3.0, Y2018), ("chile", 12.0, MAY_1), ("latvia", 4.0, None)]
    with switched_off(*GUARANTEES):
        assert _read(spark) == [
            ("\u2003peru", 3.0, Y2018),
            ("chile", 12.0, MAY_1),
            ("\u3000latvia", 4.0, None),
        ]
    assert _read(spark) == kept


def test_an_unknown_guarantee_is_refused_and_nothing_is_switched():
    with pytest.raises(KeyError), switched_off("no_such_promise"):
        pass
    assert t.country_key.__module__ == "glue_jobs.transforms"


def test_every_benchmark_build_starts_from_an_engine_and_switches_off_known_guarantees():
    for name, (base, off) in bench_pipeline.WITHOUT.items():
        assert base in bench_pipeline.ENGINES and off and set(off) <= set(GUARANTEES), name
        assert name in bench_pipeline.WORKERS and name in bench_pipeline.LABELS, name
