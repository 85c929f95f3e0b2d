"""The pipeline benchmark runs end to end on a tiny input and writes sane reports.

No timing asserts: only that every field is there and plausible.
"""

from __future__ import annotations

import json
import re

from benchmarks import bench_pipeline


def test_tiny_benchmark_writes_json_markdown_and_plot(local_stack, tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## API\n\nthe API table\n")
    out = tmp_path / "reports"

    assert (
        bench_pipeline.main(
            [
                "--sizes",
                "2000",
                "--runs",
                "1",
                "--no-real",
                "--countries",
                "all",
                "--data-dir",
                str(tmp_path / "data"),
                "--out",
                str(out),
                "--write",
                str(docs),
            ]
        )
        == 0
    )

    report = json.loads((out / "bench_pipeline.json").read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["memory_gib"] > 0
    assert len(report["load_before"]) == 3 and report["runs"] == 1
    [result] = report["results"]
    assert result["rows"] == 2000
    # The engines that clean and count as the job does agree with it, row for row.
    # The floor's native casts agree with the job's rules on generated histories.
    assert result["counts_match"] == {"floor": True, "one_pass": True, "pandas": True}
    assert set(result["engines"]) == {"spark", "floor", "copy", "one_pass", "pandas", "arrow"}
    for engine in result["engines"].values():
        assert engine["runs"] == 1
        assert 0 < engine["work_s"] <= engine["process_s"]
        assert engine["rows_per_s"] > 0
        assert engine["peak_rss_bytes"] > 10 * 2**20  # a Python process at least
        assert engine["cpu_s"] > 0
    spark, copy = result["engines"]["spark"], result["engines"]["copy"]
    parts = ("session_s", "transform_s", "db_s")
    assert min(spark[p] for p in parts) > 0
    assert abs(sum(spark[p] for p in parts) - spark["work_s"]) < 1e-6  # imports are apart
    assert set(spark["phases"]) == {"read", "duplicates", "curated", "rejected", "tally"}
    assert abs(sum(p["driver_s"] for p in spark["phases"].values()) - spark["transform_s"]) < 1e-6
    for name in ("duplicates", "curated", "rejected", "tally"):  # Spark's own account of each
        phase = spark["phases"][name]
        assert phase["jobs"] >= 1 and 0 < phase["wall_s"] <= phase["driver_s"] + 0.05, name
        assert 0 < phase["cpu_s"] <= phase["run_s"] * 1.05, name
    phased = sum(p.get("jobs", 0) for p in spark["phases"].values())
    for name in ("spark", "floor", "copy", "one_pass"):  # what each Spark engine started
        work = result["engines"][name]["spark"]
        assert work["tasks"] >= work["stages"] >= 1 and work["jobs"] >= 1, name
        assert work["compiles"] >= 1 and work["compile_s"] > 0, name
    assert spark["spark"]["jobs"] == phased  # every job of the run is in one of its phases
    assert (
        copy["countries"]
        == {
            k: {"rows_in": v["rows_in"]}  # every row, every country
            for k, v in spark["countries"].items()
        }
        or sum(c["rows_in"] for c in copy["countries"].values()) == 2000
    )
    assert spark["peak_rss_bytes"] > result["engines"]["arrow"]["peak_rss_bytes"]  # the JVM
    assert set(result["ratios"]) == {
        "ours/floor",
        "ours/copy",
        "ours/one_pass",
        "ours/pandas",
        "ours/arrow",
    }
    assert all(min(r.values()) > 0 for r in result["ratios"].values())
    assert min(result["floor/copy"].values()) > 0 and result["load"] > 0
    in_scope = sum(c["rows_in"] for c in spark["countries"].values())
    assert 0 < in_scope <= 2000

    markdown = (out / "bench_pipeline.md").read_text()
    assert markdown.startswith("## Pipeline")
    assert re.search(r"\| generated 2,000 \| [0-9.]+ \| 2,000 \|", markdown)  # input, load, rows
    assert (
        "| input | engine | jobs | stages run | tasks | code compiles | compiling s (about) |"
        in markdown
    )
    assert (out / "bench_pipeline.png").read_bytes().startswith(b"\x89PNG")
    text = docs.read_text()
    assert "## API\n\nthe API table" in text and "## Pipeline" in text


def test_tree_rss_counts_the_process_and_its_children():
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        alone = bench_pipeline.tree_rss(child.pid)
        mine = bench_pipeline.tree_rss(os.getpid())
        assert alone > 0 and mine > alone  # this process plus the child
    finally:
        child.kill()
        child.wait()
