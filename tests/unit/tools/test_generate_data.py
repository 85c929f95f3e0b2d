"""The synthetic history generator: determinism, the real file's schema, quirks, habits."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from chalicelib.rules import SEGMENT_RULES, country_key
from infra.local.paths import REAL_FILE
from scripts import generate_data
from scripts.generate_data import generate, write

COUNTRIES = {"peru", "latvia", "china", "australia"}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """50k generated rows with the dates and counts the checks need, parsed."""
    df = generate(50_000).to_pandas()
    return df.assign(
        voucher_day=pd.to_datetime(df["timestamp"]).dt.normalize(),
        last_day=pd.to_datetime(df["last_order_ts"]),
        orders=pd.to_numeric(df["total_orders"], errors="coerce"),
        country=df["country_code"].map(country_key),
    )


def test_same_seed_same_table_other_seed_other_table():
    assert generate(3000, seed=5).equals(generate(3000, seed=5))
    assert not generate(3000, seed=5).equals(generate(3000, seed=6))


def test_write_streams_chunks_of_exactly_the_generated_table(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_data, "CHUNK_ROWS", 1000)
    done: list[int] = []
    path = write(tmp_path / "v.parquet", 2500, seed=3, row_group_size=600, progress=done.append)

    assert done == [1000, 2000, 2500]
    written = pq.ParquetFile(path)
    assert written.metadata.num_row_groups == 5  # 600 + 400 in each full chunk, 500 in the last
    assert written.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert written.read().equals(generate(2500, seed=3))


def test_cli_writes_the_file_and_a_summary(tmp_path, capsys):
    out = tmp_path / "cli.parquet.gzip"
    generate_data.main(
        ["--rows", "1200", "--seed", "4", "--out", str(out), "--compression", "gzip"]
    )

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1,200/1,200 rows")
    assert lines[-1].startswith("wrote 1,200 rows") and str(out) in lines[-1]
    written = pq.ParquetFile(out)
    assert written.metadata.row_group(0).column(0).compression == "GZIP"
    assert written.read().equals(generate(1200, seed=4))


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_FILE.exists(), reason=f"real history file absent: {REAL_FILE}")
def test_schema_is_the_real_files():
    assert generate(10).schema.equals(pq.read_schema(REAL_FILE), check_metadata=False)


def test_strings_look_like_the_real_files(rows):
    assert rows["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}").all()
    assert rows["last_order_ts"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()
    assert rows["total_orders"].str.fullmatch(r"|-?\d+\.\d").all()
    assert (rows["first_order_ts"] == rows["first_order_ts"].dt.normalize()).all()


def test_quirks_come_in_the_intended_shares(rows):
    recency = (rows["voucher_day"] - rows["last_day"]).dt.days
    assert 0.07 < (rows["total_orders"] == "").mean() < 0.09
    assert 0.004 < rows["voucher_amount"].isna().mean() < 0.009
    assert 0.07 < (recency < -1000).mean() < 0.09
    assert (
        0.003
        < (rows["country_code"] != rows["country_code"].str.strip().str.title()).mean()
        < 0.008
    )
    assert set(rows["country"]) == COUNTRIES
    assert 0.05 < (rows["orders"] == 0).mean() < 0.15


def test_every_cleaning_reason_has_rows(rows):
    tenure = (rows["last_day"] - rows["first_order_ts"]).dt.days
    recency = (rows["voucher_day"] - rows["last_day"]).dt.days
    injected = {
        "duplicate_row": rows.duplicated(generate_data.SCHEMA.names),
        "missing_value": (rows["total_orders"] == "") | rows["voucher_amount"].isna(),
        "negative orders": rows["orders"] < 0,
        "fractional orders": rows["orders"] % 1 > 0,
        "zero amount": rows["voucher_amount"] == 0,
        "zero_orders_with_order_dates": rows["orders"] == 0,
        "first_after_last": tenure < 0,
        "voucher_before_last_order": recency < 0,
    }
    counts = {name: int(mask.sum()) for name, mask in injected.items()}
    assert all(count >= 2 for count in counts.values()), counts
    rare = (
        "duplicate_row",
        "negative orders",
        "fractional orders",
        "zero amount",
        "first_after_last",
    )
    assert all(counts[name] < 0.003 * len(rows) for name in rare), counts


def test_a_thousand_rows_hold_a_duplicate():
    assert generate(1000, seed=11).to_pandas().duplicated().sum() >= 1


def test_countries_have_their_own_amounts(rows):
    amounts = rows.dropna(subset=["voucher_amount"]).query("voucher_amount > 0")
    by_country = amounts.groupby("country")["voucher_amount"]
    assert by_country.agg(lambda a: a.mode()[0]).nunique() == len(COUNTRIES)
    assert len({frozenset(a) for _, a in by_country}) == len(COUNTRIES)


@pytest.mark.parametrize("rule", SEGMENT_RULES, ids=lambda rule: rule.name)
def test_most_used_amount_differs_between_segments_of_each_country(rows, rule):
    measures = {
        "frequency": rows["orders"],
        "recency_days": (rows["voucher_day"] - rows["last_day"]).dt.days,
    }
    segment = measures[rule.measure].dropna().map(rule.segment_for)
    usable = rows.assign(segment=segment).dropna(subset=["segment", "voucher_amount"])
    modes = usable.groupby(["country", "segment"])["voucher_amount"].agg(lambda a: a.mode()[0])
    assert (modes.groupby("country").nunique() >= 2).all(), modes
