"""What a reconciler tick costs as ``incoming/`` grows: its time, and the S3 requests and database
statements it makes, with every object already accounted for (the steady state: a tick finds
nothing to repair). Objects are files and dataset folders, each with its succeeded run; the tick
runs against the local stack (moto over HTTP, PostgreSQL) in a throwaway bucket and database.
Results go to ``reports/bench_reconciler.{json,md}``; ``--write`` updates its section of
docs/benchmarks.md.

    make bench-reconciler      # 1,000 and 10,000 objects (BENCH_RECONCILER_SIZES)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
from psycopg2.extras import execute_values

from benchmarks.report import machine, throwaway_database, write_section
from chalicelib import reconciler, sources
from chalicelib.intake import Intake
from infra.local import s3 as local_s3
from infra.local.paths import REPO_ROOT
from infra.local.settings import from_env

SECTION = "## Reconciler"
COMMAND = "make bench-reconciler"
TICKS = 5
#: Objects per dataset folder: a tenth of the objects are parts of folders.
PARTS = 10


class NoStarts:
    """The tick of a steady state starts nothing: a start would be a finding."""

    def start(self, run_id: str, source: str, countries: str) -> str | None:
        raise AssertionError(f"the tick started {run_id} for {source}")

    def state(self, job_run_id: str):
        raise AssertionError(f"the tick asked after {job_run_id}")


def fill(s3, bucket: str, objects: int) -> None:
    """``objects`` small objects under ``incoming/``: files, and folders of ``PARTS`` parts."""
    folders = objects // 10 // PARTS
    keys = [f"incoming/d{f:05d}/part-{p}.parquet" for f in range(folders) for p in range(PARTS)]
    keys += [f"incoming/f{n:06d}.parquet" for n in range(objects - len(keys))]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"PAR1..PAR1"), keys))


def account_for_everything(conn, s3, bucket: str) -> None:
    """A succeeded run for every file and folder, as the intake would have recorded it."""
    listed = list(sources.listed(s3, bucket, sources.INCOMING))
    rows, folders = [], {}
    for obj in listed:
        folder = sources.dataset_of(obj["Key"])
        if folder:
            folders.setdefault(folder, []).append(obj)
        else:
            rows.append((obj["Key"], obj["ETag"].strip('"'), obj["LastModified"], 1))
    for prefix, parts in folders.items():
        src = sources.described_folder(bucket, prefix, parts).source
        rows.append((prefix, src.etag, src.modified_at, src.objects))
    with conn, conn.cursor() as cur:
        execute_values(
            cur,
            "INSERT INTO runs (run_id, source_bucket, source_key, source_etag, source_modified_at,"
            " source_objects, countries, status) VALUES %s",
            [(uuid.uuid4().hex, bucket, *row, ["peru"], "succeeded") for row in rows],
        )


def measure(objects: int) -> dict:
    settings = from_env()
    s3 = local_s3.client(settings.endpoint_url)
    bucket = f"bench-reconciler-{uuid.uuid4().hex[:8]}"
    local_s3.ensure_bucket(s3, bucket)
    calls: Counter = Counter()
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    try:
        fill(s3, bucket, objects)
        with throwaway_database() as url:
            conn = psycopg2.connect(url)
            try:
                account_for_everything(conn, s3, bucket)
                ticks = []
                for _ in range(TICKS):
                    calls.clear()
                    started = time.perf_counter()
                    done = reconciler.tick(conn, Intake(conn, NoStarts(), s3=s3), bucket)
                    ticks.append(time.perf_counter() - started)
                    assert done is not None and not done.started and not done.taken_in, done
                per_tick = reconciler.ReconcilerSettings().list_pages * reconciler.PAGE_KEYS
                return {
                    "objects": objects,
                    "ticks_to_list_all": -(-objects // per_tick),
                    "tick_ms_median": round(statistics.median(ticks) * 1e3, 1),
                    "tick_ms_max": round(max(ticks) * 1e3, 1),
                    "s3_requests_per_tick": dict(calls),
                }
            finally:
                conn.close()
    finally:
        local_s3.delete_bucket(s3, bucket)


def markdown(results: list[dict], about: dict) -> str:
    lines = [
        SECTION,
        "",
        f"`{COMMAND}` on {about['cores']} cores ({about['cpu']}), Python {about['python']}: one",
        "reconciler tick against the local stack (moto over HTTP, PostgreSQL on loopback), every",
        f"object already accounted for (the steady state), median and worst of {TICKS} ticks.",
        "",
        "| objects under incoming/ | ticks to list them all | tick, median | tick, max |"
        " S3 requests a tick |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in results:
        requests = ", ".join(f"{n} {name}" for name, n in sorted(r["s3_requests_per_tick"].items()))
        lines.append(
            f"| {r['objects']:,} | {r['ticks_to_list_all']} | {r['tick_ms_median']} ms |"
            f" {r['tick_ms_max']} ms | {requests} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="update this file's Reconciler section")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (os.environ.get("BENCH_RECONCILER_SIZES") or "1000,10000").split(",")]
    results = [measure(n) for n in sizes]
    about = machine()
    reports = REPO_ROOT / "reports"
    reports.mkdir(exist_ok=True)
    report = {"machine": about, "results": results}
    (reports / "bench_reconciler.json").write_text(json.dumps(report, indent=2))
    text = markdown(results, about)
    (reports / "bench_reconciler.md").write_text(text)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
