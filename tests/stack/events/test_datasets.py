"""Dataset folders and wrong files through the real event path (S3 -> SQS -> pump -> on_upload ->
local launcher -> the job in its own process).

A folder of ``incoming/`` is one dataset: one run over every part, started by a ``_SUCCESS``
marker or once the folder has been quiet for ``DATASET_QUIET_SECONDS``; a later part starts a new
run of the whole folder. Every other object directly under ``incoming/`` is a run of its own,
judged parquet by its content, whatever its name.
"""

from __future__ import annotations

import io
import json

import pandas as pd

from tests.helpers import (
    drained,
    fetch,
    independent_expectations,
    pump_until,
    put,
    runs_of,
    sample_bytes,
    served,
    settle,
)


def parts(tmp_path, seeds: tuple[int, ...], rows: int = 1_500) -> list[bytes]:
    return [sample_bytes(tmp_path, rows=rows, seed=seed) for seed in seeds]


def expected_kept(bodies: list[bytes]) -> dict[str, int]:
    """Kept rows per country of the parts read as one table, computed independently."""
    whole = pd.concat([pd.read_parquet(io.BytesIO(b)) for b in bodies], ignore_index=True)
    return independent_expectations(whole)[0]


def run_record(db, run_id: str) -> dict:
    [row] = fetch(
        db, "SELECT status, error, rows_read, source_etag FROM runs WHERE run_id = %s", run_id
    )
    kept = dict(
        fetch(db, "SELECT country_key, rows_kept FROM run_country_stats WHERE run_id = %s", run_id)
    )
    return {"status": row[0], "error": row[1], "rows_read": row[2], "etag": row[3], "kept": kept}


def test_a_spark_folder_with_a_marker_is_one_run_over_every_part(
    uploads, quiet, s3, buckets, db, tmp_path
):
    bodies = parts(tmp_path, (31, 32, 33))
    for n, body in enumerate(bodies):
        put(s3, buckets, f"incoming/history_spark/part-{n:05d}-7c1a.c000.snappy.parquet", body)
    put(s3, buckets, "incoming/history_spark/_SUCCESS", b"")

    [(run_id, status, error)] = settle(uploads, db, "incoming/history_spark/")
    record = run_record(db, run_id)
    assert (status, error) == ("succeeded", None)
    assert record["rows_read"] == 3 * 1_500
    assert record["kept"] == {"peru": expected_kept(bodies)["peru"]}
    assert served(db) == {"peru": run_id}

    drained(uploads)  # the parts' quiet-period checks fall due: nothing new
    assert len(runs_of(db, "incoming/history_spark/")) == 1
    assert fetch(db, "SELECT count(*) FROM runs") == [(1,)]  # no part ran alone


def test_a_folder_without_a_marker_runs_once_quiet_and_again_over_every_part_later(
    uploads, quiet, s3, buckets, db, tmp_path
):
    bodies = parts(tmp_path, (41, 42, 43))
    for n, body in enumerate(bodies):  # as awswrangler's to_parquet(dataset=True) names them
        put(s3, buckets, f"incoming/wr_history/9f2e4b{n}d1c.snappy.parquet", body)
    assert pump_until(uploads, 3) == 3  # the three parts' notifications: the folder waits
    assert [s for _, s, _ in runs_of(db, "incoming/wr_history/")] == ["waiting"]

    [(first, status, _)] = settle(uploads, db, "incoming/wr_history/")
    assert status == "succeeded"
    assert run_record(db, first)["rows_read"] == 3 * 1_500

    fourth = sample_bytes(tmp_path, rows=1_000, seed=44)
    put(s3, buckets, "incoming/wr_history/9f2e4b3d1c.snappy.parquet", fourth)
    runs = settle(uploads, db, "incoming/wr_history/", runs=2)
    assert [s for _, s, _ in runs] == ["succeeded", "succeeded"]
    second = runs[1][0]
    record = run_record(db, second)
    assert record["rows_read"] == 3 * 1_500 + 1_000
    assert record["kept"] == {"peru": expected_kept([*bodies, fourth])["peru"]}
    assert record["etag"] != run_record(db, first)["etag"]
    assert served(db) == {"peru": second}


def test_a_file_that_is_not_parquet_is_a_failed_run_saying_what_it_is(
    uploads, s3, buckets, db, capsys
):
    csv = b"timestamp,country_code,total_orders\n2018-01-01,Peru,3\n"
    put(s3, buckets, "incoming/notes.csv", csv)
    [(run_id, status, error)] = settle(uploads, db, "incoming/notes.csv")
    assert status == "failed"
    assert "not parquet" in error and "text" in error and "PAR1" in error, error
    emitted = [
        metric
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"') and "FailedRuns" in (metric := json.loads(line))
    ]  # the handler's metric, for the alarm (beside its count of uploads)
    assert [(m["FailedRuns"], m["run_id"]) for m in emitted] == [(1, run_id)]
    assert emitted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "VoucherSelection"

    put(s3, buckets, "incoming/empty_folder/", b"")  # a console's folder placeholder: no run
    drained(uploads)  # its notification is handled, and nothing comes of it
    assert runs_of(db, "incoming/empty_folder/") == []
    assert len(runs_of(db, "incoming/notes.csv")) == 1


def test_a_parquet_file_is_run_whatever_the_case_of_its_suffix(uploads, s3, buckets, db, tmp_path):
    put(s3, buckets, "incoming/HISTORY.PARQUET", sample_bytes(tmp_path, rows=1_000, seed=51))
    [(run_id, status, error)] = settle(uploads, db, "incoming/HISTORY.PARQUET")
    assert (status, error) == ("succeeded", None)
    assert served(db) == {"peru": run_id}
