"""The Glue job end to end on the local stack: S3 (moto over HTTP) -> Spark -> PostgreSQL."""

from __future__ import annotations

import io
import json
from collections import Counter

import pandas as pd
import pyarrow.parquet as pq
import pytest

from chalicelib import rules, runs
from chalicelib.sources import InputError
from infra.local import pipeline as local_pipeline
from infra.local.settings import REAL_FILE
from scripts.generate_data import write
from tests.helpers import (
    fetch,
    independent_expectations,
    independent_usage,
    read_lake,
    run_job,
    sample_bytes,
    upload,
)


def test_an_uploaded_file_is_cleaned_written_and_published(stack, s3, db, tmp_path):
    body = sample_bytes(tmp_path)
    source = upload(s3, stack, "incoming/sample.parquet.gzip", body)
    run_id = run_job(stack, source)

    etag = s3.head_object(Bucket=stack.raw, Key="incoming/sample.parquet.gzip")["ETag"].strip('"')
    [(status, bucket, key, run_etag, rows_read, out_of_scope, error)] = fetch(
        db,
        "SELECT status, source_bucket, source_key, source_etag, rows_read, rows_out_of_scope,"
        " error FROM runs WHERE run_id = %s",
        run_id,
    )
    assert (status, bucket, key, run_etag, error) == (
        "succeeded",
        stack.raw,
        "incoming/sample.parquet.gzip",
        etag,
        None,
    )
    stats = fetch(
        db,
        "SELECT country_key, rows_in, rows_kept, rows_rejected, rejected_by_reason"
        " FROM run_country_stats WHERE run_id = %s",
        run_id,
    )
    assert rows_read == 20_000
    spellings = pq.read_table(io.BytesIO(body), columns=["country_code"]).column(0).to_pylist()
    named = [rules.country_key(c) for c in spellings if c and c.strip(rules.WHITESPACE)]
    assert {key: rows_in for key, rows_in, *_ in stats} == Counter(named)
    assert out_of_scope == rows_read - len(named)
    for _, rows_in, kept, rejected, by_reason in stats:
        assert rows_in == kept + rejected == kept + sum(by_reason.values())
        assert set(by_reason) == set(rules.REASON_CODES)

    published = fetch(db, "SELECT country_key, run_id FROM published_country ORDER BY 1")
    assert {r for _, r in published} == {run_id}
    assert [k for k, _ in published] == sorted(s[0] for s in stats)
    selections = fetch(db, "SELECT count(*) FROM voucher_selection WHERE run_id = %s", run_id)
    assert selections[0][0] > 0
    assert fetch(db, "SELECT count(*) FROM segment_rules WHERE run_id = %s", run_id)[0][0] == len(
        rules.rules_to_rows()
    )

    curated = read_lake(s3, stack.lake, f"curated/run_id={run_id}/")
    rejected = read_lake(s3, stack.lake, f"rejected/run_id={run_id}/")
    for key, _, kept, n_rejected, by_reason in stats:
        assert (curated.country_key == key).sum() == kept
        mine = rejected[rejected.country_key == key]
        assert len(mine) == n_rejected
        assert mine.reason.value_counts().to_dict() == {k: v for k, v in by_reason.items() if v}
    assert set(curated.columns) >= {
        "total_orders",
        "recency_days",
        "frequent_segment",
        "recency_segment",
    }


def test_a_retried_run_replaces_its_lake_partitions_and_results(stack, s3, db, tmp_path):
    source = upload(s3, stack, "incoming/again.parquet", sample_bytes(tmp_path, rows=3_000))
    run_job(stack, source, countries="Peru", run_id="rerun-1")
    first = read_lake(s3, stack.lake, "curated/run_id=rerun-1/")
    stats = fetch(db, "SELECT * FROM run_country_stats")
    run_job(stack, source, countries="Peru", run_id="rerun-1")
    assert len(read_lake(s3, stack.lake, "curated/run_id=rerun-1/")) == len(first)
    assert fetch(db, "SELECT * FROM run_country_stats") == stats
    assert fetch(db, "SELECT status FROM runs") == [("succeeded",)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"PAR1 this is not parquet at all", "is not parquet: it starts like parquet but does"),
        (None, "voucher_amount"),  # a real parquet file without that column
    ],
)
def test_a_bad_file_fails_the_run_and_the_previous_result_keeps_serving(
    stack, s3, db, tmp_path, body, message
):
    good = run_job(stack, upload(s3, stack, "incoming/good.parquet", sample_bytes(tmp_path, 5_000)))
    before = fetch(db, "SELECT country_key, run_id FROM published_country ORDER BY 1")

    if body is None:
        table = pq.read_table(io.BytesIO(sample_bytes(tmp_path, 1_000))).drop(["voucher_amount"])
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        body = buffer.getvalue()
    bad = upload(s3, stack, "incoming/bad.parquet", body)
    with pytest.raises(InputError, match=message):
        run_job(stack, bad, run_id="bad-run")

    [(status, error, finished)] = fetch(
        db, "SELECT status, error, finished_at FROM runs WHERE run_id = 'bad-run'"
    )
    assert status == "failed" and message in error and finished is not None
    assert fetch(db, "SELECT count(*) FROM run_country_stats WHERE run_id = 'bad-run'") == [(0,)]
    assert fetch(db, "SELECT country_key, run_id FROM published_country ORDER BY 1") == before
    assert {r for _, r in before} == {good}


def test_a_missing_object_fails_the_run_with_a_clear_message(stack, db):
    with pytest.raises(InputError, match="nope.parquet"):
        run_job(stack, f"s3://{stack.raw}/incoming/nope.parquet", run_id="missing-run")
    assert fetch(db, "SELECT status FROM runs WHERE run_id = 'missing-run'") == [("failed",)]


def test_make_pipeline_entry_uploads_runs_and_prints_the_summary(stack, db, tmp_path, capsys):
    path = tmp_path / "mine.parquet.gzip"
    write(path, rows=4_000, seed=5)
    assert local_pipeline.main(["--data", str(path), "--countries", "Peru,Latvia"]) == 0
    out = capsys.readouterr().out
    assert f"s3://{stack.raw}/manual/mine.parquet.gzip" in out
    assert "Selected voucher per segment" in out and "Latvia" in out
    published = fetch(db, "SELECT country_key FROM published_country ORDER BY 1")
    assert published == [("latvia",), ("peru",)]


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_FILE.exists(), reason=f"{REAL_FILE} is absent")
def test_the_real_history_file_matches_an_independent_computation(stack, s3, db, client):
    source = upload(s3, stack, "incoming/voucher_history.parquet.gzip", REAL_FILE.read_bytes())
    run_id = run_job(stack, source, countries="all")
    history = pd.read_parquet(REAL_FILE)
    kept, selections, fallbacks = independent_expectations(history)

    stats = dict(
        fetch(db, "SELECT country_key, rows_kept FROM run_country_stats WHERE run_id = %s", run_id)
    )
    assert stats == kept
    assert sum(fetch(db, "SELECT sum(rows_in) FROM run_country_stats")[0]) == 285_570
    got = {
        (c, n, s): rest
        for c, n, s, *rest in fetch(
            db,
            "SELECT country_key, segment_name, segment, voucher_amount, voucher_rows, segment_rows,"
            " runner_up_amount, runner_up_rows FROM voucher_selection WHERE run_id = %s",
            run_id,
        )
    }
    assert got == {key: list(expected) for key, expected in selections.items()}
    got_fallbacks = fetch(
        db,
        "SELECT country_key, voucher_amount, voucher_rows, country_rows,"
        " runner_up_amount, runner_up_rows FROM country_fallback"
        " WHERE run_id = %s",
        run_id,
    )
    assert {c: tuple(rest) for c, *rest in got_fallbacks} == fallbacks
    # How strong each selection is, as the API shows it: shares and leads of those counts.
    criteria = json.loads(client.http.get("/selection_criteria").body)["countries"]
    for country in criteria:
        key = country["country_key"]
        for rule in country["segment_rules"]:
            for seg in rule["segments"]:
                expected = selections.get((key, rule["segment_name"], seg["segment"]))
                if expected is None:
                    assert seg["share"] is seg["runner_up"] is seg["lead"] is None
                    continue
                amount, rows, total, second, second_rows = expected
                assert seg["share"] == pytest.approx(rows / total)
                assert seg["lead"] == pytest.approx((rows - second_rows) / total)
                assert (seg["runner_up"] or {}).get("voucher_amount") == second
                assert not seg["below_min_rows"]  # MIN_SEGMENT_ROWS is 1 by default
    # The usage behind each choice: every amount's rows (the real history uses 3 to 5 amounts a
    # country, under the limit), as published and as ?detail=usage shows it.
    usage = independent_usage(history, runs.USAGE_TOP_AMOUNTS)
    published: dict[tuple, list] = {}
    for *choice, amount, rows in fetch(
        db,
        "SELECT country_key, segment_name, segment, voucher_amount, voucher_rows"
        " FROM voucher_usage WHERE run_id = %s ORDER BY position",
        run_id,
    ):
        published.setdefault(tuple(choice), []).append((amount, rows))
    assert published == usage
    detailed = json.loads(client.http.get("/selection_criteria?detail=usage").body)["countries"]
    shown = {}
    for country in detailed:
        choices = [((None, None), country["fallback"])] + [
            ((rule["segment_name"], seg["segment"]), seg)
            for rule in country["segment_rules"]
            for seg in rule["segments"]
        ]
        for (name, segment), choice in choices:
            bars = [(a["voucher_amount"], a["rows"]) for a in choice["usage"]["amounts"]]
            assert choice["usage"]["other"] is None
            if bars:
                shown[(country["country_key"], name, segment)] = bars
    assert shown == usage


def test_make_pipeline_runs_and_publishes_again_a_file_processed_before(
    stack, db, tmp_path, capsys
):
    """A, B, then A again by hand: A is served, and the command says so."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write(a, rows=2_000, seed=71)
    write(b, rows=2_000, seed=72)
    for path in (a, b, a):
        assert local_pipeline.main(["--data", str(path)]) == 0
    out = capsys.readouterr().out
    third = out.rsplit("Run ", 1)[1]
    run_id = third.split(":", 1)[0]
    assert fetch(db, "SELECT country_key, run_id FROM published_country") == [("peru", run_id)]
    assert fetch(db, "SELECT source_key FROM runs WHERE run_id = %s", run_id) == [
        ("manual/a.parquet",)
    ]
    assert f"Peru is served by run {run_id} (this run)" in third
    assert "nothing to do" not in out
