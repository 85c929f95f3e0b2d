"""The API benchmark runs end to end on a small mix and writes sane reports.

No timing asserts: only that every measure is there and plausible, and that the one-query-per-
request baseline it compares against answers every request as the API does.
"""

from __future__ import annotations

import json
from collections import Counter

from benchmarks import bench_api
from chalicelib.api.store import default_store


def test_the_mix_covers_both_segment_names_every_segment_and_refusals():
    bodies = bench_api.mixed_requests(2_000)
    assert bench_api.mixed_requests(2_000) == bodies  # the same mix every time
    parsed = []
    for body in bodies:
        try:
            parsed.append(json.loads(body))
        except json.JSONDecodeError:
            parsed.append(None)
    names = Counter(p.get("segment_name") if p else "not JSON" for p in parsed)
    assert names["frequent_segment"] > 800 and names["recency_segment"] > 800
    assert names["loyalty_segment"] > 0 and names["not JSON"] > 0
    frequent = [p for p in parsed if p and p.get("segment_name") == "frequent_segment"]
    orders = {p["total_orders"] for p in frequent}
    assert {0, 4, 5, 13, 14, 37, 38} <= orders


def test_tiny_api_benchmark_writes_json_markdown_and_docs(local_stack, tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the benchmark sets its own
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Pipeline\n\nthe pipeline table\n")
    out = tmp_path / "reports"
    try:
        assert (
            bench_api.main(
                [
                    "--requests",
                    "300",
                    "--http-requests",
                    "30",
                    "--cold-runs",
                    "1",
                    "--batches",
                    "3",
                    "--batch-items",
                    "50",
                    "--out",
                    str(out),
                    "--write",
                    str(docs),
                ]
            )
            == 0
        )
    finally:
        default_store.cache_clear()  # its store pointed at the dropped benchmark database

    report = json.loads((out / "bench_api.json").read_text())
    assert report["agree"] is True
    for name, requests in (
        ("warm", 300),
        ("sql", 300),
        ("criteria", 300),
        ("http", 30),
        ("batch", 3),
    ):
        measured = report[name]
        assert measured["requests"] == requests == sum(measured["statuses"].values())
        assert 0 < measured["p50"] <= measured["p99"] <= measured["max"]
    assert set(report["warm"]["statuses"]) == {"200", "400", "404"}
    assert report["warm"]["statuses"] == report["sql"]["statuses"]
    assert report["criteria"]["statuses"] == {"200": 300}
    assert report["batch"]["statuses"] == {"200": 3} and report["batch_items"] == 50
    assert [len(json.loads(b)["customers"]) for b in bench_api.batch_requests(3, 50)] == [50] * 3
    [cold] = report["cold"]
    assert 0 < cold["import_ms"] <= cold["total_ms"] <= cold["process_ms"]

    markdown = (out / "bench_api.md").read_text()
    assert markdown.startswith("## API") and "one SQL query each" in markdown
    assert "## Pipeline\n\nthe pipeline table" in docs.read_text() and "## API" in docs.read_text()
