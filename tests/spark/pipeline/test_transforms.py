"""The job's pure DataFrame functions on small frames: every rule, bound and input shape."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chalicelib import rules
from glue_jobs import transforms as t
from glue_jobs.pipeline import build_result
from tests.helpers import RECENCY_BOUNDARIES

#: The real file's physical schema.
REAL_SCHEMA = T.StructType(
    [
        T.StructField("timestamp", T.StringType()),
        T.StructField("country_code", T.StringType()),
        T.StructField("last_order_ts", T.StringType()),
        T.StructField("first_order_ts", T.TimestampType()),
        T.StructField("total_orders", T.StringType()),
        T.StructField("voucher_amount", T.DoubleType()),
    ]
)
BASE = {
    "timestamp": "2018-07-21 18:59:21.102761",
    "country_code": "Peru",
    "last_order_ts": "2018-04-20",
    "first_order_ts": dt.datetime(2018, 1, 5),
    "total_orders": "2.0",
    "voucher_amount": 2640.0,
}  # recency 92 days (91-120), frequency 2 (0-4): a row every rule keeps


def frame(spark, *changes: dict, schema: T.StructType = REAL_SCHEMA):
    rows = [tuple({**BASE, **change}[f.name] for f in schema.fields) for change in changes]
    return spark.createDataFrame(rows, schema)


def segment(df, countries=("peru",)):
    """Every step of the job from the input frame to the segmented rows."""
    scoped = t.select_in_scope(t.check_input(df), countries)
    return t.assign_segments(t.classify(t.distinct_rows(scoped)))


def classified(spark, *changes: dict, countries=("peru",), schema=REAL_SCHEMA):
    return segment(frame(spark, *changes, schema=schema), countries)


def result_of(segmented, rows_read: int):
    """The run's statistics and selections, from the outputs as the job counts them."""
    return build_result(t.tally(t.kept_rows(segmented), t.rejected_rows(segmented)), rows_read)


def reason_of(spark, change: dict, schema=REAL_SCHEMA) -> str | None:
    rows = classified(spark, change, schema=schema).select("reason").collect()
    assert len(rows) == 1
    return rows[0]["reason"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"total_orders": ""}, "missing_value"),
        ({"total_orders": "   "}, "missing_value"),
        ({"total_orders": None}, "missing_value"),
        ({"total_orders": "two"}, "missing_value"),
        ({"total_orders": "NaN"}, "missing_value"),
        ({"voucher_amount": None}, "missing_value"),
        ({"voucher_amount": float("nan")}, "missing_value"),
        ({"timestamp": None}, "missing_value"),
        ({"timestamp": "yesterday"}, "missing_value"),
        ({"timestamp": "2018"}, "missing_value"),
        ({"last_order_ts": ""}, "missing_value"),
        ({"last_order_ts": "2018-13-45"}, "missing_value"),
        ({"first_order_ts": None}, "missing_value"),
        ({"total_orders": "-1.0"}, "invalid_value"),
        ({"total_orders": "2.5"}, "invalid_value"),
        ({"total_orders": "Infinity"}, "missing_value"),  # not decimal notation: unparseable
        ({"total_orders": "3d"}, "missing_value"),  # Java's float suffix: no number
        ({"total_orders": "1e999"}, "invalid_value"),  # decimal notation, infinite
        ({"total_orders": "1e300"}, "invalid_value"),
        ({"voucher_amount": 0.0}, "invalid_value"),
        ({"voucher_amount": -5.0}, "invalid_value"),
        ({"voucher_amount": float("inf")}, "invalid_value"),
        ({"total_orders": "0.0"}, "zero_orders_with_order_dates"),
        ({"total_orders": "0"}, "zero_orders_with_order_dates"),
        ({"total_orders": "1"}, None),
        ({"first_order_ts": dt.datetime(2018, 4, 21)}, "first_after_last"),
        ({"first_order_ts": dt.datetime(2018, 4, 20, 23, 59)}, None),  # same day: not after
        ({"timestamp": "2018-04-19 23:59:59.999999"}, "voucher_before_last_order"),
        ({"timestamp": "2015-05-21 18:37:09.161843"}, "voucher_before_last_order"),
        ({"timestamp": "2018-04-20 00:00:00.000000"}, None),  # same day: not before
    ],
)
def test_each_rule_on_both_sides(spark, change, reason):
    assert reason_of(spark, change) == reason


def test_a_row_is_rejected_by_the_first_rule_it_fails(spark):
    # fails missing_value, invalid amount, zero orders and voucher_before_last_order at once
    change = {"total_orders": "0", "voucher_amount": None, "timestamp": "2015-01-01 00:00:00"}
    assert reason_of(spark, change) == "missing_value"
    # fails invalid_value and first_after_last
    change = {"total_orders": "-3", "first_order_ts": dt.datetime(2019, 1, 1)}
    assert reason_of(spark, change) == "invalid_value"
    # fails zero orders, first_after_last and voucher_before_last_order
    change = {
        "total_orders": "0",
        "first_order_ts": dt.datetime(2019, 1, 1),
        "timestamp": "2018-01-01 00:00:00",
    }
    assert reason_of(spark, change) == "zero_orders_with_order_dates"
    change = {"first_order_ts": dt.datetime(2019, 1, 1), "timestamp": "2018-01-01 00:00:00"}
    assert reason_of(spark, change) == "first_after_last"


def test_duplicates_keep_one_copy_and_the_copy_still_meets_the_other_rules(spark):
    bad = {"voucher_amount": None}
    df = classified(spark, {}, {}, {}, bad, bad, {"total_orders": "3.0"})
    rejected = t.rejected_rows(df)
    reasons = sorted(r["reason"] for r in rejected.collect())
    assert reasons == ["duplicate_row", "duplicate_row", "duplicate_row", "missing_value"]
    assert t.kept_rows(df).count() == 2
    stats = result_of(df, rows_read=6).countries[0]
    assert stats.rows_in == 6
    assert stats.rows_kept == 2
    assert stats.rejected_by_reason["duplicate_row"] == 3
    assert stats.rejected_by_reason["missing_value"] == 1


def test_rows_differing_only_in_country_spelling_are_not_duplicates(spark):
    df = classified(spark, {"country_code": "Peru"}, {"country_code": "peru"})
    assert t.kept_rows(df).count() == 2


@pytest.mark.parametrize("spelling", ["Peru", "peru", "PERU", " Peru", "Peru  ", "\tpEru\n"])
def test_country_is_matched_trimmed_and_case_blind(spark, spelling):
    df = classified(spark, {"country_code": spelling})
    assert [r["country_key"] for r in df.collect()] == ["peru"] == [rules.country_key(spelling)]
    assert [c.country for c in result_of(df, rows_read=1).countries] == ["Peru"]


def test_other_countries_are_out_of_scope_and_all_takes_every_named_one(spark):
    changes = [{"country_code": c} for c in ("Peru", "Perú", "Latvia", "", None, "  ")]
    assert classified(spark, *changes).count() == 1
    everything = classified(spark, *changes, countries=None)
    result = result_of(everything, rows_read=len(changes))
    assert [c.country for c in result.countries] == ["Latvia", "Peru", "Perú"]
    assert result.rows_out_of_scope == 3


@pytest.mark.parametrize(
    ("orders", "segment"),
    [
        ("0", None),
        ("1", "0-4"),
        ("4", "0-4"),
        ("5", "5-13"),
        ("13", "5-13"),
        ("14", "14-37"),
        ("37", "14-37"),
        ("38", None),
        ("1000", None),
    ],
)
def test_frequency_segment_bounds(spark, orders, segment):
    rows = t.kept_rows(classified(spark, {"total_orders": orders})).collect()
    if orders == "0":  # zero orders never reaches segmentation: rule 4 rejects it
        assert rows == []
        return
    assert rows[0]["total_orders"] == int(orders)
    assert rows[0]["frequent_segment"] == segment


@pytest.mark.parametrize(("days", "segment"), [(0, None), (29, None), *RECENCY_BOUNDARIES])
def test_recency_segment_bounds(spark, days, segment):
    voucher = dt.datetime(2018, 4, 20, 23, 30) + dt.timedelta(days=days)
    rows = t.kept_rows(
        classified(spark, {"timestamp": f"{voucher:%Y-%m-%d %H:%M:%S.%f}"})
    ).collect()
    assert rows[0]["recency_days"] == days
    assert rows[0]["recency_segment"] == segment


TIME_SHAPES = T.StructType(
    [
        T.StructField("timestamp", T.TimestampType()),
        T.StructField("country_code", T.StringType()),
        T.StructField("last_order_ts", T.TimestampType()),
        T.StructField("first_order_ts", T.StringType()),
        T.StructField("total_orders", T.LongType()),
        T.StructField("voucher_amount", T.StringType()),
    ]
)


def test_every_input_shape_of_the_spec_normalises_to_the_same_row(spark):
    typed = {
        "timestamp": dt.datetime(2018, 7, 21, 18, 59, 21),
        "last_order_ts": dt.datetime(2018, 4, 20),
        "first_order_ts": "2018-01-05",
        "total_orders": 2,
        "voucher_amount": " 2640 ",
    }
    rows = t.kept_rows(classified(spark, typed, schema=TIME_SHAPES)).collect()
    assert len(rows) == 1
    row = rows[0]
    assert (row["total_orders"], row["voucher_amount"]) == (2, 2640.0)
    assert (row["recency_days"], row["recency_segment"], row["frequent_segment"]) == (
        92,
        "91-120",
        "0-4",
    )
    as_strings = t.kept_rows(classified(spark, {})).collect()[0]
    assert (as_strings["recency_days"], as_strings["total_orders"]) == (92, 2)


@pytest.mark.parametrize(
    "text",
    [
        "2018-04-20",
        "2018-04-20 00:00:00",
        "2018-04-20T00:00:00",
        "2018-04-20T05:00:00Z",
        "2018-04-20 13:14:15.123456",
    ],
)
def test_timestamp_strings_in_the_accepted_shapes_parse(spark, text):
    assert reason_of(spark, {"last_order_ts": text}) is None


def test_a_missing_column_fails_with_its_name(spark):
    df = frame(spark, {}).drop("voucher_amount")
    with pytest.raises(t.InputError, match="voucher_amount"):
        t.check_input(df)


def test_an_unusable_column_type_fails_with_its_name(spark):
    schema = T.StructType(
        [
            f if f.name != "timestamp" else T.StructField("timestamp", T.LongType())
            for f in REAL_SCHEMA.fields
        ]
    )
    df = spark.createDataFrame([(1, "Peru", "2018-04-20", None, "1", 1.0)], schema)
    with pytest.raises(t.InputError, match="timestamp is bigint"):
        t.check_input(df)


def test_extra_columns_are_ignored(spark):
    df = frame(spark, {}).withColumnRenamed("voucher_amount", "voucher_amount")
    df = df.selectExpr("*", "'x' AS customer_note")
    assert t.check_input(df).columns == list(rules.INPUT_COLUMNS)


def test_input_columns_are_matched_in_any_case_and_padding_never_twice():
    names = ["a.b", "TIMESTAMP", " Country_Code\u00a0", "last_order_ts", "x`y"]
    names += ["First_Order_Ts", "\u3000TOTAL_ORDERS", "voucher_amount\t", "voucher amount"]
    assert t.input_columns(names) == {
        "timestamp": "TIMESTAMP",
        "country_code": " Country_Code\u00a0",
        "last_order_ts": "last_order_ts",
        "first_order_ts": "First_Order_Ts",
        "total_orders": "\u3000TOTAL_ORDERS",
        "voucher_amount": "voucher_amount\t",
    }
    with pytest.raises(t.InputError, match="'voucher_amount\\\\t' and 'Voucher_Amount'"):
        t.input_columns([*names, "Voucher_Amount"], "b.parquet")
    with pytest.raises(t.InputError, match="b.parquet lacks required column.s. total_orders;"):
        t.input_columns([n for n in names if "ORDERS" not in n], "b.parquet")


def test_check_input_gives_the_columns_their_own_names_whatever_the_others_hold(spark):
    renamed = frame(spark, {}).toDF("TimeStamp", "COUNTRY_CODE ", *REAL_SCHEMA.fieldNames()[2:])
    odd = renamed.selectExpr("*", "1 AS `a.b`", "2 AS `x``y`", "3 AS `Total Orders`")
    checked = t.check_input(odd)
    assert checked.columns == list(rules.INPUT_COLUMNS)
    assert checked.collect() == frame(spark, {}).collect()


def test_selection_is_the_most_used_amount_and_a_tie_goes_to_the_lower(spark):
    changes = (
        [{"voucher_amount": 4400.0, "timestamp": f"2018-07-21 10:00:0{i}"} for i in range(2)]
        + [{"voucher_amount": 2640.0, "timestamp": f"2018-07-21 11:00:0{i}"} for i in range(2)]
        + [{"voucher_amount": 8800.0, "total_orders": "20", "timestamp": "2018-07-21 12:00:00"}]
    )
    result = result_of(classified(spark, *changes), rows_read=len(changes))
    chosen = {(s.segment_name, s.segment): s for s in result.selections}
    tie = chosen[("frequent_segment", "0-4")]
    assert (tie.voucher_amount, tie.voucher_rows, tie.segment_rows) == (2640.0, 2, 4)
    assert chosen[("frequent_segment", "14-37")].voucher_amount == 8800.0
    recency = chosen[("recency_segment", "91-120")]
    assert (recency.voucher_amount, recency.segment_rows) == (2640.0, 5)
    (fallback,) = result.fallbacks
    assert (fallback.voucher_amount, fallback.voucher_rows, fallback.country_rows) == (2640.0, 2, 5)


def test_counts_reconcile_for_every_country_on_generated_data(spark, tmp_path):
    import pyarrow.parquet as pq

    from scripts.generate_data import write

    path = tmp_path / "sample.parquet.gzip"
    write(path, rows=20_000, seed=11)
    result = result_of(segment(spark.read.parquet(str(path)), countries=None), rows_read=20_000)
    spellings = pq.read_table(path, columns=["country_code"]).column(0).to_pylist()
    rows_in = Counter(rules.country_key(c) for c in spellings if c and c.strip(rules.WHITESPACE))
    assert {c.country_key: c.rows_in for c in result.countries} == rows_in
    assert result.rows_out_of_scope == 20_000 - sum(rows_in.values())
    for c in result.countries:
        assert c.rows_in == c.rows_kept + c.rows_rejected
    assert {code for c in result.countries for code, n in c.rejected_by_reason.items() if n} == set(
        rules.REASON_CODES
    )


def test_a_hash_collision_never_makes_different_rows_duplicates(spark):
    df = t.select_in_scope(
        t.check_input(frame(spark, {}, {}, {"total_orders": "3.0"}, {"total_orders": "4.0"})),
        ("peru",),
    )
    every_hash = df.select(F.xxhash64(*rules.INPUT_COLUMNS).alias("row_hash"))  # all "repeated"
    groups = t.duplicate_groups(df, every_hash)
    copies = sorted(r["copies"] for r in t.distinct_rows(df, every_hash, groups).collect())
    assert copies == [1, 1, 2]
    assert sorted(r["copies"] for r in t.distinct_rows(df).collect()) == copies


def test_each_rejected_copy_is_one_output_row_the_first_with_its_own_reason(spark):
    bad = {"voucher_amount": None}
    rejected = t.rejected_rows(classified(spark, bad, bad, bad, {}, {})).collect()
    assert sorted(r["reason"] for r in rejected) == ["duplicate_row"] * 3 + ["missing_value"]
    assert {r["voucher_amount"] for r in rejected} == {None, "2640.0"}
    assert {r["first_order_ts"] for r in rejected} == {"2018-01-05 00:00:00"}


def test_a_run_fails_when_its_input_changes_while_it_reads_it(spark, tmp_path):
    import logging

    from glue_jobs.lake_io import Lake
    from glue_jobs.pipeline import JobOptions, transform
    from scripts.generate_data import write

    source = tmp_path / "history.parquet"
    write(source, rows=2_000, seed=1)

    class OverwriteAfterTheFirstPass(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("read "):  # the first pass done: outputs come next
                write(source, rows=1_500, seed=2)

    job_log = logging.getLogger("voucher_selection")
    handler, level = OverwriteAfterTheFirstPass(), job_log.level
    job_log.addHandler(handler)
    job_log.setLevel(logging.INFO)
    options = JobOptions(str(source), "all", "changed", str(tmp_path / "c"), str(tmp_path / "r"))
    try:
        with Lake(spark) as lake, pytest.raises(t.InputError, match="changed while the run"):
            transform(spark, lake, options)
    finally:
        job_log.removeHandler(handler)
        job_log.setLevel(level)


NUMBER_TEXT = st.text(alphabet="0123456789+-.eExd_ \t\u00a0\u3000\u2003١", max_size=9)
COUNTRY_TEXT = st.text(alphabet="PeruÉσΣß \t\n\u00a0\u3000\u2003\u202f\u205f\u200b\x1c", max_size=8)


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(NUMBER_TEXT, min_size=300, max_size=300),
    names=st.lists(COUNTRY_TEXT, min_size=300, max_size=300),
)
def test_the_job_reads_number_text_and_country_names_as_the_api_does(spark, texts, names):
    """One definition, two engines: Spark's reading of number text and country names equals the
    Python the API runs (``rules.decimal_number``, ``rules.country_key``) on any such text."""
    df = spark.createDataFrame(list(zip(texts, names, strict=True)), "n string, c string")
    got = df.select(t._number(df, "n").alias("number"), t.country_key("c").alias("key")).collect()
    assert [r["number"] for r in got] == [rules.decimal_number(text) for text in texts]
    assert [r["key"] for r in got] == [rules.country_key(name) for name in names]


def test_a_prefix_of_several_schemas_is_read_as_one_canonical_frame(spark):
    """Each part keeps its values; a column stored two ways is compared as text (numbers in
    decimal notation that reads back as the same number, infinities included)."""
    text = frame(spark, {"total_orders": "2.0", "voucher_amount": 2640.0})
    typed_schema = T.StructType(
        [
            *REAL_SCHEMA.fields[:4],
            T.StructField("total_orders", T.LongType()),
            T.StructField("voucher_amount", T.DoubleType()),
        ]
    )
    typed = frame(spark, {"total_orders": 3, "voucher_amount": float("inf")}, schema=typed_schema)
    unified = t.unify([(text, "a.parquet"), (typed, "b.parquet")])
    assert unified.schema["total_orders"].dataType == T.StringType()
    assert unified.schema["voucher_amount"].dataType == T.DoubleType()  # stored one way: kept
    rows = t.assign_segments(t.classify(t.distinct_rows(t.select_in_scope(unified, ("peru",)))))
    got = sorted((r["total_orders"], r["orders"], r["amount"], r["reason"]) for r in rows.collect())
    assert got == [("2.0", 2.0, 2640.0, None), ("3", 3.0, float("inf"), "invalid_value")]
    with pytest.raises(t.InputError, match="b.parquet: input column.*total_orders is boolean"):
        bad = frame(
            spark,
            {"total_orders": True},
            schema=T.StructType(
                [
                    *REAL_SCHEMA.fields[:4],
                    T.StructField("total_orders", T.BooleanType()),
                    REAL_SCHEMA.fields[5],
                ]
            ),
        )
        t.unify([(text, "a.parquet"), (bad, "b.parquet")])
