"""Dirty and hostile input files through the whole job (S3 -> Spark -> PostgreSQL): each is either
processed per SPEC or fails its run with a message naming the problem, and never publishes half a
result. A file that is not parquet at all, and one lacking a column, are in
``tests/spark/pipeline/test_job_end_to_end.py``; the rules row by row in ``tests/spark/pipeline``.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from decimal import Decimal

import numpy
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chalicelib import rules
from scripts.generate_data import generate
from tests import oracle
from tests.helpers import fetch, post, run_job, upload


def parquet(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


def truncated() -> bytes:
    whole = parquet(generate(500, seed=1))
    return whole[: len(whole) // 2]  # an upload cut short: no footer


def corrupt_pages() -> bytes:
    """A whole file, footer intact, whose first data page header is garbage."""
    body = bytearray(parquet(generate(500, seed=1), compression="none"))
    offset = pq.ParquetFile(io.BytesIO(bytes(body))).metadata.row_group(0).column(4)
    start = offset.data_page_offset
    body[start : start + 40] = b"\xff" * 40
    return bytes(body)


def timestamps_as_int() -> bytes:
    table = generate(50, seed=1)
    for name in ("timestamp", "last_order_ts", "first_order_ts"):
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(range(len(table)), pa.int64())
        )
    return parquet(table)


def country_too_long() -> bytes:
    table = generate(50, seed=1)
    names = ["Peru"] * (len(table) - 1) + ["Ñ" * 300]  # 600 bytes: no folder can be named so
    index = table.schema.get_field_index("country_code")
    return parquet(table.set_column(index, "country_code", pa.array(names)))


def served(db) -> list[tuple]:
    return fetch(db, "SELECT country_key, run_id FROM published_country ORDER BY 1")


def lake_objects(s3, bucket: str, run_id: str) -> list[str]:
    return [
        o["Key"]
        for prefix in ("curated", "rejected")
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/run_id={run_id}/").get(
            "Contents", []
        )
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (truncated, "is not parquet: it starts like parquet but does not end with PAR1"),
        (lambda: b"", "is not parquet: it is empty (0 bytes)"),
        (corrupt_pages, "can not read class org.apache.parquet.format.PageHeader"),
        (timestamps_as_int, "timestamp is bigint; last_order_ts is bigint; first_order_ts is"),
        (
            country_too_long,
            f"longer than {rules.MAX_COUNTRY_CHARS} characters, too long for a country name: 'Ññññ",
        ),
    ],
    ids=["truncated", "zero-bytes", "corrupt-pages", "timestamps-as-int", "country-too-long"],
)
def test_a_broken_file_fails_its_run_naming_the_problem_and_publishes_nothing(
    stack, published, s3, make, message
):
    before = served(published)
    source = upload(s3, stack, "incoming/broken.parquet", make())
    with pytest.raises(Exception, match="."):  # the job exits non-zero, whatever the cause
        run_job(stack, source, countries="all", run_id="run-broken")
    [(status, error)] = fetch(
        published, "SELECT status, error FROM runs WHERE run_id = %s", "run-broken"
    )
    assert status == "failed" and message in error, error
    assert fetch(
        published, "SELECT count(*) FROM run_country_stats WHERE run_id = %s", "run-broken"
    ) == [(0,)]
    assert served(published) == before
    assert lake_objects(s3, stack.lake, "run-broken") == []


def test_a_file_with_no_rows_is_processed_and_publishes_nothing(stack, published, s3):
    before = served(published)
    empty = parquet(generate(50, seed=1).slice(0, 0))  # the real schema, zero rows
    run_job(stack, upload(s3, stack, "incoming/empty.parquet", empty), run_id="run-empty")
    assert fetch(
        published,
        "SELECT status, rows_read, published_countries, error FROM runs WHERE run_id = 'run-empty'",
    ) == [("succeeded", 0, [], None)]
    assert served(published) == before


#: A row every rule keeps: recency 92 days (91-120), frequency 2 (0-4).
GOOD = {
    "timestamp": "2018-07-21 18:59:21.102761",
    "country_code": "Peru",
    "last_order_ts": "2018-04-20",
    "first_order_ts": dt.datetime(2018, 1, 5),
    "total_orders": 2,
    "voucher_amount": "2640",
}
LONGEST = "😀" * rules.MAX_COUNTRY_CHARS  # 4 bytes each: the longest name a lake folder holds
#: Rows as (changes to GOOD, expected reason); ``total_orders`` int64 and ``voucher_amount``
#: text are shapes the SPEC accepts; extreme numbers are classified like any other.
ROWS = [
    ({"country_code": "Perú", "voucher_amount": "1e308"}, None),
    ({"country_code": "  PERÚ\t", "voucher_amount": "1e308"}, None),
    ({"country_code": "日本", "voucher_amount": "5e-324"}, None),
    ({"country_code": "ΣΟΦΙΑΣ", "voucher_amount": " 1.7976931348623157e308 "}, None),
    ({"country_code": LONGEST, "voucher_amount": "123456789012345678901234567890"}, None),
    ({"total_orders": 37}, None),
    ({}, None),
    ({"total_orders": 2**62}, "invalid_value"),  # beyond 2**53: not an exact whole number
    ({"total_orders": -(2**63)}, "invalid_value"),
    ({"voucher_amount": "1e999"}, "invalid_value"),  # infinite
    ({"voucher_amount": "-0.0"}, "invalid_value"),
    ({"voucher_amount": "NaN"}, "missing_value"),
    ({"voucher_amount": ""}, "missing_value"),
    ({"total_orders": 0}, "zero_orders_with_order_dates"),
]


def quirky_file() -> bytes:
    rows = [{**GOOD, **change} for change, _ in ROWS]
    columns = {name: [row[name] for row in rows] for name in GOOD}
    table = pa.table(
        {
            **{name: pa.array(values) for name, values in columns.items()},
            "total_orders": pa.array(columns["total_orders"], pa.int64()),
            "note": pa.array(["x" * 10_000] * len(rows)),  # extra columns are ignored
            "voucher_amount_eur": pa.array([1.5] * len(rows)),
        }
    )
    return parquet(table)


def test_odd_but_valid_shapes_unicode_long_names_and_extreme_numbers_are_processed_per_spec(
    stack, published, s3, client
):
    run_id = run_job(
        stack, upload(s3, stack, "incoming/quirky.parquet", quirky_file()), countries="all"
    )
    stats = {
        key: (rows_in, kept, by_reason)
        for key, rows_in, kept, by_reason in fetch(
            published,
            "SELECT country_key, rows_in, rows_kept, rejected_by_reason"
            " FROM run_country_stats WHERE run_id = %s",
            run_id,
        )
    }
    assert {key: (rows_in, kept) for key, (rows_in, kept, _) in stats.items()} == {
        "perú": (2, 2),
        "日本": (1, 1),
        "σοφιας": (1, 1),
        LONGEST: (1, 1),
        "peru": (9, 2),
    }
    assert stats["peru"][2] == {
        code: sum(reason == code for _, reason in ROWS) for code in rules.REASON_CODES
    }

    fallbacks = dict(
        fetch(
            published,
            "SELECT country_key, voucher_amount FROM country_fallback WHERE run_id = %s",
            run_id,
        )
    )
    assert fallbacks == {
        "perú": 1e308,
        "日本": 5e-324,
        "σοφιας": 1.7976931348623157e308,
        LONGEST: 1.2345678901234568e29,
        "peru": 2640.0,
    }
    request = {"segment_name": "frequent_segment", "total_orders": 3}
    answers = [
        (" PERÚ", int(1e308)),
        ("日本", 5e-324),
        ("ΣΟΦΙΑΣ", int(1.7976931348623157e308)),
        (LONGEST, int(1.2345678901234568e29)),
    ]  # integers when whole, however large
    for name, amount in answers:
        status, answer = post(client, {**request, "country_code": name})
        assert (status, answer["voucher_amount"], answer["basis"]) == (200, amount, "segment")


# ---------------------------------------------------------------- files from other writers


def retyped(table: pa.Table, **types: pa.DataType) -> pa.Table:
    """``table`` with columns stored as other physical types, as another writer would: text read
    as it means (an unreadable value becomes null)."""
    for name, kind in types.items():
        values = [_value(v, kind) for v in table.column(name).to_pylist()]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, kind))
    return table


def _value(value, kind: pa.DataType):
    if pa.types.is_boolean(kind):
        return None
    if pa.types.is_temporal(kind):
        return _moment(value, kind)
    number = oracle.number(value)
    if number is None or math.isinf(number):
        return None
    if pa.types.is_decimal(kind):
        return Decimal(f"{number:.2f}")
    if pa.types.is_integer(kind):
        return int(number) if number.is_integer() else None
    return number


def _moment(value, kind: pa.DataType):
    """A text moment as a date or timestamp column holds it (UTC), or null where it is none."""
    if not isinstance(value, str) or oracle.utc_day(value) is None:
        return None
    moment = dt.datetime.fromisoformat(value.strip())
    if moment.tzinfo:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.date() if pa.types.is_date(kind) else moment


def stats(conn, run_id: str) -> dict[str, tuple]:
    return {
        key: (rows_in, kept, {r: n for r, n in by_reason.items() if n})
        for key, rows_in, kept, by_reason in fetch(
            conn,
            "SELECT country_key, rows_in, rows_kept, rejected_by_reason"
            " FROM run_country_stats WHERE run_id = %s",
            run_id,
        )
    }


def test_an_ancient_or_sentinel_date_is_a_date_the_rules_judge(stack, published, s3):
    rows = [
        {**GOOD, "first_order_ts": dt.datetime(1, 1, 1)},  # .NET / SQL Server "no date"
        {**GOOD, "first_order_ts": dt.datetime(1500, 1, 1), "timestamp": "2018-07-21"},
        {**GOOD, "last_order_ts": "1500-03-01", "first_order_ts": dt.datetime(1499, 1, 1)},
        {**GOOD, "last_order_ts": "9999-12-31"},  # far future: after the voucher
    ]
    table = pa.table({name: [row[name] for row in rows] for name in GOOD})
    table = table.set_column(3, "first_order_ts", table.column(3).cast(pa.timestamp("us")))
    run_id = run_job(stack, upload(s3, stack, "incoming/sentinels.parquet", parquet(table)))
    assert stats(published, run_id) == {"peru": (4, 3, {"voucher_before_last_order": 1})}
    [(oldest,)] = fetch(
        published,
        "SELECT segment_rows FROM voucher_selection WHERE run_id = %s"
        " AND segment_name = 'recency_segment' AND segment = '180+'",
        run_id,
    )
    assert oldest == 1  # the voucher 518 years after the last order of 1500


def test_a_prefix_mixing_writers_is_one_run_over_every_file(stack, published, s3, client):
    text = generate(600, seed=21)  # the real file's types: times and numbers as text
    typed = retyped(
        generate(400, seed=22),
        timestamp=pa.timestamp("us", tz="UTC"),
        last_order_ts=pa.date32(),
        total_orders=pa.float64(),
    )
    nanos = retyped(
        generate(300, seed=23),
        timestamp=pa.timestamp("ns"),
        total_orders=pa.int64(),
        voucher_amount=pa.decimal128(12, 2),
    )
    for name, table in (("a", text), ("b", typed), ("c", nanos)):
        upload(s3, stack, f"incoming/mixed/{name}.parquet", parquet(table))
    upload(s3, stack, "incoming/mixed/d.parquet", parquet(text.slice(0, 5)))  # rows seen in a
    run_id = run_job(stack, f"s3://{stack.raw}/incoming/mixed/", countries="all")

    [(rows_read, status)] = fetch(
        published, "SELECT rows_read, status FROM runs WHERE run_id = %s", run_id
    )
    assert (rows_read, status) == (1_305, "succeeded")
    rows = [row for t in (text, typed, nanos, text.slice(0, 5)) for row in t.to_pylist()]
    want = {
        key: (sum(c.values()), c[None], {r: n for r, n in c.items() if r})
        for key, c in oracle.outcomes(rows, None).items()
    }  # the SPEC, in plain Python
    assert stats(published, run_id) == want
    in_scope_copies = sum(1 for row in text.slice(0, 5).to_pylist() if oracle.country(row))
    duplicates = sum(n.get("duplicate_row", 0) for _, _, n in want.values())
    assert duplicates >= in_scope_copies > 0  # the rows file d repeats from file a


def test_a_column_no_writer_can_mean_fails_the_run_naming_the_file_and_column(stack, published, s3):
    upload(s3, stack, "incoming/odd/a.parquet", parquet(generate(50, seed=24)))
    upload(
        s3,
        stack,
        "incoming/odd/b.parquet",
        parquet(retyped(generate(50, seed=25), last_order_ts=pa.bool_())),
    )
    with pytest.raises(Exception, match="."):
        run_job(stack, f"s3://{stack.raw}/incoming/odd/", run_id="run-odd")
    [(status, error)] = fetch(published, "SELECT status, error FROM runs WHERE run_id = 'run-odd'")
    assert status == "failed" and "incoming/odd/b.parquet" in error, error
    assert "last_order_ts is boolean" in error and "a.parquet" not in error


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("3d", "missing_value"),
        ("0x1p2", "missing_value"),
        ("1_000", "missing_value"),
        ("NaN", "missing_value"),
        ("Infinity", "missing_value"),
        ("١٢", "missing_value"),
        ("\u00a02\u3000", None),
        ("+2", None),
        ("2.0", None),
        (".2e1", None),
        ("2.5", "invalid_value"),
    ],
)
def test_only_decimal_notation_is_a_number(stack, published, s3, text, reason):
    row = {**GOOD, "total_orders": text}
    table = pa.table({name: [row[name]] for name in GOOD})
    run_id = run_job(stack, upload(s3, stack, "incoming/orders.parquet", parquet(table)))
    assert stats(published, run_id) == {
        "peru": (1, 0 if reason else 1, {reason: 1} if reason else {})
    }


def test_unicode_spaces_never_split_a_country(stack, published, s3, client):
    names = ["Peru\u00a0", "\u3000peru", " PERU\u2003", "Peru", "\u202fLatvia\u205f"]
    rows = [
        {**GOOD, "country_code": name, "timestamp": f"2018-07-21 18:59:{n:02d}"}
        for n, name in enumerate(names)
    ]
    table = pa.table({name: [row[name] for row in rows] for name in GOOD})
    run_id = run_job(
        stack, upload(s3, stack, "incoming/spaces.parquet", parquet(table)), countries="all"
    )
    assert stats(published, run_id) == {"peru": (4, 4, {}), "latvia": (1, 1, {})}
    for name in names:
        status, answer = post(
            client, {"country_code": name, "segment_name": "frequent_segment", "total_orders": 2}
        )
        assert (status, answer["country_code"]) == (200, name.strip(oracle.UNICODE_SPACES).title())


# ------------------------------------------- column names, unreadable extras, names of objects


def renamed(table: pa.Table, names: dict[str, str]) -> pa.Table:
    return table.rename_columns([names.get(n, n) for n in table.column_names])


def lake_columns(s3, bucket: str, run_id: str) -> set[tuple[str, ...]]:
    """The column names of every parquet object the run wrote to the lake."""
    return {
        tuple(
            pq.read_schema(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).names
        )
        for key in lake_objects(s3, bucket, run_id)
        if not key.rsplit("/", 1)[-1].startswith(("_", "."))
    }


def test_column_names_match_in_any_case_and_padding_and_the_lake_keeps_lower_case(
    stack, published, s3, client
):
    lower = generate(400, seed=31)
    upper = generate(300, seed=32)  # Snowflake's COPY INTO, Oracle: upper-case names
    mixed = generate(200, seed=33)
    upload(s3, stack, "incoming/cased/lower.parquet", parquet(lower))
    upload(
        s3,
        stack,
        "incoming/cased/upper.parquet",
        parquet(renamed(upper, {c: c.upper() for c in rules.INPUT_COLUMNS})),
    )
    spellings = [
        "Timestamp",
        " Country_Code",
        "LAST_ORDER_TS\u00a0",
        "First_Order_TS",
        "\tTotal_Orders",
        "Voucher_Amount\u3000",
    ]
    upload(
        s3,
        stack,
        "incoming/cased/mixed.parquet",
        parquet(renamed(mixed, dict(zip(rules.INPUT_COLUMNS, spellings, strict=True)))),
    )
    run_id = run_job(stack, f"s3://{stack.raw}/incoming/cased/", countries="all")

    rows = [row for t in (lower, upper, mixed) for row in t.to_pylist()]
    assert stats(published, run_id) == {
        key: (sum(c.values()), c[None], {r: n for r, n in c.items() if r})
        for key, c in oracle.outcomes(rows, None).items()
    }
    written = lake_columns(s3, stack.lake, run_id)
    assert written and all(set(rules.INPUT_COLUMNS) - {"country_code"} <= set(n) for n in written)
    assert all(n == tuple(c.lower() for c in n) for n in written), written
    status, answer = post(
        client, {"country_code": "Peru", "segment_name": "frequent_segment", "total_orders": 3}
    )
    assert status == 200 and answer["country_code"] == "Peru"


def test_two_columns_differing_only_in_case_fail_the_run_naming_both(stack, published, s3):
    table = generate(50, seed=34)
    twice = table.append_column("COUNTRY_CODE ", table.column("country_code"))
    upload(s3, stack, "incoming/twice/a.parquet", parquet(table))
    upload(s3, stack, "incoming/twice/b.parquet", parquet(twice))
    with pytest.raises(Exception, match="."):
        run_job(stack, f"s3://{stack.raw}/incoming/twice/", run_id="run-twice")
    [(status, error)] = fetch(
        published, "SELECT status, error FROM runs WHERE run_id = 'run-twice'"
    )
    assert status == "failed" and "incoming/twice/b.parquet" in error, error
    assert "'country_code'" in error and "'COUNTRY_CODE '" in error, error
    assert "a.parquet" not in error
    assert lake_objects(s3, stack.lake, "run-twice") == []


def test_an_extra_column_spark_cannot_read_never_fails_a_run(stack, published, s3):
    """pandas writes a ``datetime.time`` column as parquet INT64 TIME(MICROS), which Spark 3.5
    refuses to read; the job does not need it."""
    frame = generate(300, seed=35).to_pandas()
    frame["delivery_slot"] = [dt.time(n % 24, n % 60, 0, n) for n in range(len(frame))]
    body = io.BytesIO()
    frame.to_parquet(body, index=False)
    stored = pq.read_schema(io.BytesIO(body.getvalue()))
    assert str(stored.field("delivery_slot").type) == "time64[us]"
    run_id = run_job(
        stack, upload(s3, stack, "incoming/slots.parquet", body.getvalue()), countries="all"
    )
    want = {
        key: (sum(c.values()), c[None], {r: n for r, n in c.items() if r})
        for key, c in oracle.outcomes(generate(300, seed=35).to_pylist(), None).items()
    }
    assert stats(published, run_id) == want


def test_a_needed_column_in_a_type_spark_cannot_read_fails_naming_file_and_column(
    stack, published, s3
):
    table = generate(50, seed=36)
    slots = pa.array([dt.time(10, 0)] * len(table), pa.time64("us"))
    table = table.set_column(table.schema.get_field_index("timestamp"), "TIMESTAMP", slots)
    source = upload(s3, stack, "incoming/time_of_day.parquet", parquet(table))
    with pytest.raises(Exception, match="."):
        run_job(stack, source, run_id="run-time-of-day")
    [(status, error)] = fetch(
        published, "SELECT status, error FROM runs WHERE run_id = 'run-time-of-day'"
    )
    assert status == "failed" and "incoming/time_of_day.parquet" in error, error
    assert "timestamp" in error and "TIME(MICROS" in error, error


def test_object_names_are_read_exactly_never_as_glob_patterns(stack, published, tmp_path):
    """A local folder is read in place: its paths go to Spark as they are, as S3 URIs do on Glue.
    Each file holds another country; a glob would read a decoy instead (``[1]`` matches ``1``,
    ``{x,y}`` matches ``x``, ``*`` and ``?`` match anything), or a file twice."""
    names = {
        "history[1].parquet": "Peru",
        "history1.parquet": "Latvia",
        "part{x,y}.parquet": "China",
        "partx.parquet": "Chile",
        "all*.parquet": "Mexico",
        "all?.parquet": "Spain",
        "allq.parquet": "Italy",
        "back\\slash.parquet": "France",
        "a b%20c#d.parquet": "Japan",
    }
    folder = tmp_path / "odd names"
    folder.mkdir()
    tables = {}
    for n, (name, country) in enumerate(names.items()):
        table = generate(10 + n, seed=40 + n)
        index = table.schema.get_field_index("country_code")
        tables[name] = table.set_column(index, "country_code", pa.array([country] * len(table)))
        pq.write_table(tables[name], folder / name)

    run_id = run_job(stack, str(folder / "history[1].parquet"), countries="all")
    assert set(stats(published, run_id)) == {"peru"}
    [(rows_read,)] = fetch(published, "SELECT rows_read FROM runs WHERE run_id = %s", run_id)
    assert rows_read == len(tables["history[1].parquet"])

    run_id = run_job(stack, str(folder), countries="all")
    rows = [row for table in tables.values() for row in table.to_pylist()]
    assert stats(published, run_id) == {
        key: (sum(c.values()), c[None], {r: n for r, n in c.items() if r})
        for key, c in oracle.outcomes(rows, None).items()
    }


def java_written(spark, path, rows: list[dict]) -> bytes:
    """``rows`` written by parquet-mr, the Java writer of Hive and most JVM exporters, with an
    extra ``INTERVAL`` column (12 bytes: months, days, milliseconds), a parquet type Spark's
    reader refuses and pyarrow cannot write. The six columns as text, the amount a double."""
    jvm = spark.sparkContext._jvm
    text = " ".join(
        f"optional binary {c.upper()} (UTF8);" for c in rules.INPUT_COLUMNS if c != "voucher_amount"
    )
    schema = jvm.org.apache.parquet.schema.MessageTypeParser.parseMessageType(
        f"message export {{ {text} optional double VOUCHER_AMOUNT;"
        " optional fixed_len_byte_array(12) DELIVERY_WINDOW (INTERVAL); }"
    )
    writer = (
        jvm.org.apache.parquet.hadoop.example.ExampleParquetWriter.builder(
            jvm.org.apache.hadoop.fs.Path(str(path))
        )
        .withType(schema)
        .build()
    )
    groups = jvm.org.apache.parquet.example.data.simple.SimpleGroupFactory(schema)
    for row in rows:
        group = groups.newGroup()
        for column, value in row.items():
            group.add(column.upper(), value if column == "voucher_amount" else str(value))
        window = bytes([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])  # 1 month, 2 days, 3 ms
        group.add(
            "DELIVERY_WINDOW", jvm.org.apache.parquet.io.api.Binary.fromConstantByteArray(window)
        )
        writer.write(group)
    writer.close()
    return path.read_bytes()


def test_an_interval_column_as_java_writers_store_it_never_fails_a_run(
    stack, published, s3, spark, tmp_path
):
    rows = [
        {**GOOD, "first_order_ts": "2018-01-05", "voucher_amount": 2640.0, "total_orders": n}
        for n in (1, 2, 2, 5, 0)
    ]
    body = java_written(spark, tmp_path / "export.parquet", rows)
    run_id = run_job(stack, upload(s3, stack, "incoming/java.parquet", body), countries="all")
    assert stats(published, run_id) == {
        "peru": (5, 3, {"duplicate_row": 1, "zero_orders_with_order_dates": 1})
    }


def test_a_half_float_column_fails_the_run_saying_which_and_why(stack, published, s3):
    """Spark 3.5's parquet library (parquet-mr 1.13) cannot read the footer of a file that has
    a FLOAT16 column (pyarrow's float16), so no column of it can be read, not even the six: the
    run fails naming the file, the column and what to do."""
    table = generate(50, seed=38)
    half = pa.array(numpy.arange(len(table), dtype=numpy.float16), pa.float16())
    source = upload(s3, stack, "incoming/half.parquet", parquet(table.append_column("ratio", half)))
    with pytest.raises(Exception, match="."):
        run_job(stack, source, run_id="run-half")
    [(status, error)] = fetch(published, "SELECT status, error FROM runs WHERE run_id = 'run-half'")
    assert status == "failed" and "incoming/half.parquet is not a readable parquet file" in error
    assert "column(s) 'ratio' have a logical type" in error and "FLOAT16" in error, error
    assert lake_objects(s3, stack.lake, "run-half") == []
