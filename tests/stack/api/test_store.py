"""The published-result cache: refresh on a new publish, and a database that goes away."""

from __future__ import annotations

import json

from chalicelib import db as chalice_db
from chalicelib.api.store import PublishedStore, default_store
from infra.local import postgres
from scripts import sample_runs
from scripts.sample_runs import SAMPLE
from tests.helpers import get, post

PERU_FREQUENT = {"country_code": "Peru", "segment_name": "frequent_segment", "total_orders": 2}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def peru_0_4(store: PublishedStore) -> float:
    return store.published().countries["peru"].selections["frequent_segment", "0-4"].voucher_amount


def test_the_cache_checks_at_most_every_ttl_and_reloads_on_a_new_publish(published, database_url):
    clock = Clock()
    connections = []

    def connect():
        connections.append(chalice_db.connect())
        return connections[-1]

    store = PublishedStore(connect, ttl_seconds=30, clock=clock)
    first = store.published()
    assert peru_0_4(store) == sample_runs.PERU["frequent_segment", "0-4"]

    sample_runs.publish(published, sample_runs.SECOND_RUN, sample_runs.SECOND)
    clock.now += 29.9
    assert store.published() is first  # not due: answered from memory, no query
    clock.now += 0.1
    second = store.published()
    assert second is not first
    assert peru_0_4(store) == sample_runs.PERU_SECOND["frequent_segment", "0-4"]
    assert second.countries["peru"].run.run_id == sample_runs.SECOND_RUN
    assert second.countries["latvia"].run.run_id == sample_runs.FIRST_RUN  # not republished

    clock.now += 30
    assert store.published() is second  # checked, unchanged: nothing reloaded
    assert len(connections) == 1  # one connection, kept


def test_a_new_publish_reaches_the_api(client, published):
    assert post(client, PERU_FREQUENT)[1]["voucher_amount"] == 1100
    sample_runs.publish(published, sample_runs.SECOND_RUN, sample_runs.SECOND)
    assert post(client, PERU_FREQUENT)[1]["voucher_amount"] == 1101
    status, latvia = post(client, {**PERU_FREQUENT, "country_code": "Latvia"})
    assert (status, latvia["voucher_amount"]) == (200, 5)
    health = get(client, "/health")[1]
    assert {p["country_code"]: p["run_id"] for p in health["published"]} == {
        "China": sample_runs.FIRST_RUN,
        "Latvia": sample_runs.FIRST_RUN,
        "Peru": sample_runs.SECOND_RUN,
    }


def test_a_failed_run_changes_nothing_served(client, published):
    from chalicelib.runs import Source, fail_run, start_run

    before = get(client, "/selection_criteria")
    start_run(published, "run-broken", Source("voucher-raw", "incoming/broken.parquet"), None)
    fail_run(published, "run-broken", "not a parquet file")
    assert get(client, "/selection_criteria") == before


def test_database_stopped_mid_test_serves_stale_answers_and_reports_degraded(
    client, throwaway_server
):
    status, answer = post(client, SAMPLE)
    assert (status, answer["voucher_amount"]) == (200, 2640)
    assert get(client, "/health")[1]["status"] == "ok"

    postgres.stop(throwaway_server.data_dir)

    assert post(client, SAMPLE) == (status, answer)  # from the last loaded result
    assert get(client, "/selection_criteria")[0] == 200
    status, health = get(client, "/health")
    assert (status, health["status"], health["database"]) == (200, "degraded", "unreachable")
    assert [p["run_id"] for p in health["published"]] == [sample_runs.FIRST_RUN] * 3

    postgres.start(throwaway_server.data_dir, throwaway_server.port)

    # the connection that died is replaced at the next check: healthy again at once
    status, health = get(client, "/health")
    assert (status, health["status"], health["database"]) == (200, "ok", "reachable")
    assert post(client, SAMPLE) == (200, answer)


def test_database_down_before_anything_was_loaded_is_a_503_until_it_is_back(
    client, throwaway_server, caplog, monkeypatch
):
    monkeypatch.setenv("CACHE_TTL_SECONDS", "3600")  # retries while empty do not wait for it
    postgres.stop(throwaway_server.data_dir)
    status, body = post(client, SAMPLE)
    assert (status, body["error"]["code"], body["error"]["field"]) == (503, "unavailable", None)
    assert "database" in body["error"]["message"]
    status, health = get(client, "/health")
    assert (status, health) == (
        503,
        {"status": "unavailable", "database": "unreachable", "loaded_at": None, "published": []},
    )
    assert "OperationalError" in caplog.text  # the cause is logged, not answered
    assert "OperationalError" not in json.dumps(body)

    postgres.start(throwaway_server.data_dir, throwaway_server.port)
    assert post(client, SAMPLE)[0] == 200


def test_the_connection_has_a_statement_timeout_and_reads_one_snapshot(published, monkeypatch):
    monkeypatch.setenv("STATEMENT_TIMEOUT_MS", "1234")
    store = default_store()
    store.published()
    with store._conn.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "1234ms"
        cur.execute(
            "SELECT current_setting('transaction_read_only'),"
            " current_setting('transaction_isolation')"
        )
        assert cur.fetchone() == ("on", "repeatable read")
    store._conn.rollback()


def test_details_need_the_database_while_the_criteria_answer_from_memory(client, throwaway_server):
    assert get(client, "/selection_criteria?detail=usage,changes")[0] == 200
    postgres.stop(throwaway_server.data_dir)
    assert get(client, "/selection_criteria")[0] == 200  # from the last loaded result
    status, body = get(client, "/selection_criteria?detail=usage")
    assert (status, body["error"]["code"]) == (503, "unavailable")
    postgres.start(throwaway_server.data_dir, throwaway_server.port)
    assert get(client, "/selection_criteria?detail=usage")[0] == 200
