"""The job on a Spark standalone cluster (a master and two workers from the pyspark wheel, each
its own JVM, on loopback): the same counts and selections as in local mode. Closures,
broadcasts, caches and observations that only worked inside one JVM would break here."""

from __future__ import annotations

import os
import subprocess
import sys

from infra.local.settings import REAL_FILE, REPO_ROOT
from infra.local.spark_cluster import master_status, standalone
from scripts.generate_data import write
from tests.helpers import fetch, run_job, upload

RESULTS = {
    "stats": "SELECT country_key, rows_in, rows_kept, rejected_by_reason, unsegmented"
    " FROM run_country_stats WHERE run_id = %s ORDER BY 1",
    "selections": "SELECT country_key, segment_name, segment, voucher_amount, voucher_rows,"
    " segment_rows FROM voucher_selection WHERE run_id = %s ORDER BY 1, 2, 3",
    "fallbacks": "SELECT country_key, voucher_amount, voucher_rows, country_rows"
    " FROM country_fallback WHERE run_id = %s ORDER BY 1",
}


def results(db, run_id: str) -> dict:
    return {name: fetch(db, sql, run_id) for name, sql in RESULTS.items()}


def test_the_job_on_a_standalone_cluster_counts_and_selects_as_in_local_mode(
    stack, s3, db, tmp_path
):
    data = REAL_FILE if REAL_FILE.exists() else write(tmp_path / "h.parquet", 50_000, seed=9)
    source = upload(s3, stack, "incoming/cluster.parquet", data.read_bytes())
    run_job(stack, source, countries="all", run_id="run-local")

    with standalone(workers=2) as (master, ui):
        env = {**os.environ, "SPARK_MASTER": master, "SPARK_CLASS_ARCHIVE": ""}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "glue_jobs.voucher_selection_job",
                "--source",
                source,
                "--countries",
                "all",
                "--run_id",
                "run-cluster",
                "--curated_location",
                f"s3://{stack.lake}/curated/",
                "--rejected_location",
                f"s3://{stack.lake}/rejected/",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        status = master_status(ui)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    [app] = status["completedapps"]  # the job ran as an application of the cluster
    assert app["name"] == "voucher-selection" and app["cores"] == 2, app

    db.rollback()
    cluster, local = results(db, "run-cluster"), results(db, "run-local")
    assert cluster == local and cluster["stats"] and cluster["selections"]
