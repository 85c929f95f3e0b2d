"""GET /runs and GET /runs/{run_id} through the Chalice test client, on the real PostgreSQL."""

from __future__ import annotations

import pytest

from chalicelib import runs
from scripts import sample_runs
from tests.helpers import assert_error, get


@pytest.fixture
def history(db):
    """A published run, then a failed one (newest)."""
    sample_runs.publish(db, sample_runs.FIRST_RUN, sample_runs.FIRST)
    runs.start_run(db, "run-failed", runs.Source("voucher-raw", "incoming/bad.parquet", "e9"), None)
    runs.fail_run(
        db, "run-failed", "s3://voucher-raw/incoming/bad.parquet is not a readable parquet"
    )
    return db


def test_runs_lists_the_latest_first_with_status_stats_and_errors(client, history):
    status, body = get(client, "/runs")
    assert status == 200
    assert [r["run_id"] for r in body["runs"]] == ["run-failed", sample_runs.FIRST_RUN]
    failed, succeeded = body["runs"]
    assert failed["status"] == "failed" and "not a readable parquet" in failed["error"]
    assert failed["source"] == {
        "bucket": "voucher-raw",
        "key": "incoming/bad.parquet",
        "etag": "e9",
        "objects": None,
    }
    assert (failed["requested_by"], failed["job_run_id"], failed["heartbeat_age_seconds"]) == (
        "manual",
        None,
        None,
    )  # started by hand, not by an event; finished
    assert failed["stats"] == [] and failed["published_countries"] is None
    assert succeeded["status"] == "succeeded"
    assert sorted(succeeded["published_countries"]) == ["china", "latvia", "peru"]
    for country in succeeded["stats"]:
        assert country["rows_in"] == country["rows_kept"] + country["rows_rejected"]
        assert sum(country["rejected_by_reason"].values()) == country["rows_rejected"]
    assert get(client, "/runs?limit=1")[1]["runs"][0]["run_id"] == "run-failed"


def test_one_run_by_id_and_an_unknown_id(client, history):
    status, body = get(client, f"/runs/{sample_runs.FIRST_RUN}")
    assert status == 200 and body["run_id"] == sample_runs.FIRST_RUN
    assert_error(get(client, "/runs/no-such-run"), 404, "unknown_run", "run_id")
    assert_error(get(client, "/runs/x' OR '1'='1"), 404, "unknown_run", "run_id")


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1; DROP TABLE runs"])
def test_an_unusable_limit_is_a_400(client, history, limit):
    assert_error(get(client, f"/runs?limit={limit}"), 400, "invalid_field", "limit")
    assert get(client, "/runs")[0] == 200  # the table is intact


@pytest.mark.parametrize("zeros", [1, 5000])
def test_a_limit_with_leading_zeros_is_its_number(client, history, zeros):
    """Leading zeros are allowed (the OpenAPI pattern says so), however many: past Python's
    4,300-digit int() limit too."""
    status, body = get(client, f"/runs?limit={'0' * zeros}1")
    assert status == 200 and [r["run_id"] for r in body["runs"]] == ["run-failed"]


def test_runs_are_filtered_by_status_as_readers_see_it(client, history):
    """An abandoned run (its lease ran out) is ``failed`` for the filter too."""
    folder = runs.Source("voucher-raw", "incoming/history_2026_12/")
    waiting = runs.wait_for_dataset(history, folder, None, "the folder is not quiet yet").run_id
    queued = runs.Source("voucher-raw", "incoming/next.parquet", "e2")
    assert runs.take_in(history, "run-queued", queued, None, 60) == "run-queued"
    runs.start_run(history, "run-stalled", runs.Source("voucher-raw", "incoming/s.parquet"), None)
    with history, history.cursor() as cur:
        cur.execute(
            "UPDATE runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = 'run-stalled'"
        )

    def listed(query: str) -> dict[str, str]:
        status, body = get(client, f"/runs{query}")
        assert status == 200
        return {r["run_id"]: r["status"] for r in body["runs"]}

    assert listed("?status=failed") == {"run-failed": "failed", "run-stalled": "failed"}
    assert listed("?status=waiting,queued") == {waiting: "waiting", "run-queued": "queued"}
    assert listed("?status=succeeded&limit=5") == {sample_runs.FIRST_RUN: "succeeded"}
    assert listed("?status=running") == {}
    assert len(listed("")) == len(listed("?status=waiting,queued,running,succeeded,failed")) == 5


@pytest.mark.parametrize("status", ["", "done", "failed,", "FAILED", "failed, queued"])
def test_an_unknown_status_is_a_400(client, history, status):
    assert_error(get(client, f"/runs?status={status}"), 400, "invalid_field", "status")
