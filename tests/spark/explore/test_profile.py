"""The report's numbers: a run of the job's, and reconciled every way the pipeline promises."""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from chalicelib import rules
from explore.__main__ import main
from explore.profile import profile
from glue_jobs.lake_io import Lake
from glue_jobs.pipeline import JobOptions, transform


def jsonable(value):
    return json.loads(json.dumps(value))


def by_key(items: list[dict]) -> dict[str, dict]:
    return {item["country_key"]: item for item in items}


def test_the_cli_writes_a_self_contained_page_and_a_summary_and_says_where(sample_report):
    assert f"report:  {sample_report.html.resolve()}" in sample_report.printed
    assert f"summary: {sample_report.summary.resolve()}" in sample_report.printed
    page = sample_report.html.read_text()
    countries = len(sample_report.profile["run"]["countries"])
    # waterfall, by year, three distributions, amounts, one mix per country
    assert page.count('src="data:image/png;base64,') == 6 + countries
    assert "http://" not in page and "https://" not in page
    assert 'src="' not in page.replace('src="data:', "")


def test_the_numbers_are_those_of_a_run_of_the_job_on_the_same_input(
    spark, sample_report, tmp_path
):
    options = JobOptions(
        source=sample_report.source,
        countries="all",
        run_id="eda-check",
        curated_location=str(tmp_path / "curated"),
        rejected_location=str(tmp_path / "rejected"),
    )
    with Lake(spark) as lake:
        result = transform(spark, lake, options).result
    assert sample_report.profile["run"] == jsonable(asdict(result))

    rejected = (
        pq.read_table(tmp_path / "rejected")
        .group_by(["country_key", "reason"])
        .aggregate([("reason", "count")])
    )
    kept = (
        pq.read_table(tmp_path / "curated")
        .group_by("country_key")
        .aggregate([("country_key", "count")])
    )
    countries = sample_report.profile["run"]["countries"]
    assert {
        (str(row["country_key"]), row["reason"]): row["reason_count"]
        for row in rejected.to_pylist()
    } == {
        (c["country_key"], code): n
        for c in countries
        for code, n in c["rejected_by_reason"].items()
        if n
    }
    assert {str(r["country_key"]): r["country_key_count"] for r in kept.to_pylist()} == {
        c["country_key"]: c["rows_kept"] for c in countries
    }


def test_every_count_reconciles(report):
    numbers = report.profile
    run = numbers["run"]
    countries = run["countries"]
    assert numbers["stored"]["rows"] == run["rows_read"]
    assert run["rows_read"] == run["rows_out_of_scope"] + sum(c["rows_in"] for c in countries)
    in_scope = {key: q["rows"] for key, q in numbers["quality"].items() if key}
    assert in_scope == {c["country_key"]: c["rows_in"] for c in countries}
    assert numbers["quality"].get("", {"rows": 0})["rows"] == run["rows_out_of_scope"]
    for c in countries:
        assert c["rows_in"] == c["rows_kept"] + sum(c["rejected_by_reason"].values())
        years = numbers["by_year"][c["country_key"]].values()
        assert sum(y["rows_in"] for y in years) == c["rows_in"]
        assert sum(y["rows_kept"] for y in years) == c["rows_kept"]
        for code, n in c["rejected_by_reason"].items():
            assert sum(y[code] for y in years) == n, code
        spellings = numbers["quality"][c["country_key"]]["spellings"]
        assert {rules.country_key(s) for s in spellings} == {c["country_key"]}
        assert sum(spellings.values()) == c["rows_in"]


def test_kept_rows_fall_in_the_segments_the_pipeline_counted(report):
    numbers = report.profile
    selections = {
        (s["country_key"], s["segment_name"], s["segment"]): s for s in numbers["run"]["selections"]
    }
    segmented = [m for m in numbers["measures"] if m["segment_rule"]]
    assert {m["segment_rule"] for m in segmented} == {r.name for r in rules.SEGMENT_RULES}
    for measure in segmented:
        rule = next(r for r in rules.SEGMENT_RULES if r.name == measure["segment_rule"])
        for c in numbers["run"]["countries"]:
            key = c["country_key"]
            entry = numbers["distributions"][measure["name"]][key]
            assert entry["kept_stats"]["rows"] == c["rows_kept"]
            in_segments = 0
            for segment in rule.segments:
                rows = sum(kept for value, _, kept in entry["counts"] if segment.contains(value))
                rows += entry["above"][1] if segment.upper is None else 0
                chosen = selections.get((key, rule.name, segment.label))
                assert rows == (chosen["segment_rows"] if chosen else 0), (key, segment)
                in_segments += rows
            assert c["rows_kept"] - in_segments == c["unsegmented"][rule.name]


def test_the_voucher_mix_holds_each_selected_amount_as_the_most_used(report):
    numbers = report.profile
    for s in numbers["run"]["selections"]:
        mix = dict(
            map(
                tuple, numbers["mix"][s["country_key"]]["segments"][s["segment_name"]][s["segment"]]
            )
        )
        assert sum(mix.values()) == s["segment_rows"]
        assert mix[s["voucher_amount"]] == s["voucher_rows"] == max(mix.values())
    for f in numbers["run"]["fallbacks"]:
        mix = dict(map(tuple, numbers["mix"][f["country_key"]]["all"]))
        assert sum(mix.values()) == f["country_rows"]
        assert mix[f["voucher_amount"]] == f["voucher_rows"] == max(mix.values())


def test_nulls_and_empty_strings_match_a_pass_of_pyarrow(report):
    table = pq.read_table(report.source)
    quality = report.profile["quality"].values()
    for name in rules.INPUT_COLUMNS:
        column = table[name]
        counted = {
            kind: sum(q["columns"][name].get(kind, 0) for q in quality)
            for kind in ("null", "empty", "nan")
        }
        assert counted["null"] == column.null_count, name
        if pa.types.is_string(column.type):
            assert counted["empty"] == (pc.sum(pc.equal(column, "")).as_py() or 0), name
        if pa.types.is_floating(column.type):
            assert counted["nan"] == (pc.sum(pc.is_nan(column)).as_py() or 0), name


@pytest.mark.real_data
def test_the_real_file_shows_the_quirks_the_spec_names(real_report):
    numbers = real_report.profile
    run = numbers["run"]
    assert run["rows_read"] == 285_570
    assert len(run["countries"]) == 4
    stored = {c["column"]: c["logical_type"] for c in numbers["stored"]["columns"]}
    assert stored["total_orders"] == stored["timestamp"] == stored["last_order_ts"] == "STRING"
    assert sum(q["columns"]["total_orders"]["empty"] for q in numbers["quality"].values()) > 0
    # about 8% of rows have a voucher dated before their own last order, ~three years before
    early = sum(
        rows
        for entry in numbers["distributions"]["recency_days"].values()
        for value, rows, _ in entry["counts"]
        if -3 * 365 - 100 < value < -3 * 365 + 100
    )
    assert 0.07 < early / run["rows_read"] < 0.09
    duplicates = sum(c["rejected_by_reason"]["duplicate_row"] for c in run["countries"])
    assert 0 < duplicates < 100


def test_an_s3_input_is_read_through_the_endpoint(spark, s3, buckets, sample_file, sample_report):
    key = "incoming/sample.parquet"
    s3.upload_file(str(sample_file), buckets.raw, key)
    numbers = jsonable(profile(spark, f"s3://{buckets.raw}/{key}"))
    assert numbers["source"] == f"s3://{buckets.raw}/{key}"
    for part in ("stored", "run", "quality", "distributions", "by_year", "mix"):
        assert numbers[part] == sample_report.profile[part], part


def test_an_input_that_is_not_parquet_fails_with_its_reason(spark, tmp_path, capsys):
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet at all\n")
    assert main(["--data", str(text), "--out", str(tmp_path / "out")]) == 2
    assert f"cannot profile {text}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_file_with_upper_case_names_and_columns_spark_cannot_read_is_profiled(
    spark, sample_file, sample_report, tmp_path
):
    """The report reads an input as the job does: the six columns in any case, extra columns of
    any type (a time of day, nested lists, maps and structs) left alone but listed as stored."""
    table = pq.read_table(sample_file)
    table = table.rename_columns([f" {name.upper()}" for name in table.column_names])
    rows = len(table)
    table = table.append_column("slot", pa.array([None] * rows, pa.time64("us")))
    meta = pa.struct([("tags", pa.list_(pa.string())), ("seen", pa.map_(pa.string(), pa.int64()))])
    nested = pa.array([{"tags": ["a"], "seen": [("k", 1)]}] * rows, meta)
    table = table.add_column(0, "meta", nested)
    source = tmp_path / "upper.parquet"
    pq.write_table(table, source)

    got = jsonable(profile(spark, str(source)))

    assert got["run"] == sample_report.profile["run"]
    assert got["quality"] == sample_report.profile["quality"]
    assert [c["column"] for c in got["stored"]["columns"]] == table.column_names
    stored = pq.read_schema(source)
    assert [c["arrow_type"] for c in got["stored"]["columns"]] == [str(t) for t in stored.types]
    assert [c["physical_type"] for c in got["stored"]["columns"]][::7] == ["group", "INT64"]
