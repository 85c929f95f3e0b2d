"""Runs of the pipeline on the local stack, for ``make pipeline`` and ``make run``.

    python -m infra.local.pipeline --data PATH [--countries Peru|all|Peru,Latvia]
    python -m infra.local.pipeline --trigger [--data PATH]

``PATH`` is a parquet file or a dataset folder (every file below it, as Spark or awswrangler
wrote it). By default it goes under the raw bucket's ``manual/`` prefix (no event fires there)
and the Glue job runs on it here, in Spark local mode, for the countries asked: a run asked for
by hand, which runs and publishes even an input processed before. With ``--trigger`` it goes under
``incoming/`` as a real upload: S3 notifies the queue, the event pump invokes the upload handler,
the handler launches the job, and this command follows that run's log until it is published or
failed. Without ``--data`` a deterministic synthetic sample is used. Expects the local stack up
(``python -m infra.local.stack up``; with ``--trigger`` also ``python -m infra.local.events
start``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from chalicelib import rules, sources
from chalicelib.runs.status import FINISHED, RunStatus
from chalicelib.sources import MARKER
from infra.local import catalog, s3
from infra.local.settings import CURATED_PREFIX, RAW_PREFIX, REJECTED_PREFIX, Settings, from_env

MANUAL_PREFIX = "manual/"
SAMPLE_ROWS = 300_000
SAMPLE_SEED = 7
RUN_TIMEOUT_S = 1800


def sample_file(state_dir: Path, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> Path:
    """The generated sample for ``make run`` (generated on first use, then reused)."""
    from scripts.generate_data import write

    path = state_dir / "sample" / f"voucher_sample_{rows}_{seed}.parquet"
    if not path.exists():
        print(f"generating {rows:,} synthetic rows (seed {seed}) into {path}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, rows=rows, seed=seed)
    return path


def upload(settings: Settings, path: Path, prefix: str) -> str:
    """Put ``path`` (a file, or a folder with every file below it, its ``_SUCCESS`` marker last)
    under ``prefix`` of the raw bucket; return the key the run reads (the folder's ends in /)."""
    started = time.monotonic()
    client = s3.client(settings.endpoint_url)
    if path.is_dir():
        key = f"{prefix}{path.name}/"
        files = sorted((f for f in path.rglob("*") if f.is_file()), key=lambda f: f.name == MARKER)
    else:
        key, files = f"{prefix}{path.name}", [path]
    for file in files:
        name = key if file == path else key + file.relative_to(path).as_posix()
        client.upload_file(str(file), settings.raw_bucket, name)
    size = sum(f.stat().st_size for f in files)
    print(
        f"uploaded {path} ({len(files)} file(s), {size / 1e6:.1f} MB) to "
        f"s3://{settings.raw_bucket}/{key} in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return key


def run_here(settings: Settings, key: str, countries: str) -> int:
    """Run the Glue job in this process on ``key`` and print its summary."""
    from glue_jobs import voucher_selection_job
    from glue_jobs.pipeline import error_message

    try:
        return voucher_selection_job.main(
            [
                "voucher_selection_job",
                "--source",
                f"s3://{settings.raw_bucket}/{key}",
                "--countries",
                countries,
                "--curated_location",
                f"s3://{settings.lake_bucket}/{CURATED_PREFIX}",
                "--rejected_location",
                f"s3://{settings.lake_bucket}/{REJECTED_PREFIX}",
            ]
        )
    except Exception as exc:  # the run record holds the same message
        print(f"run failed: {error_message(exc)}", file=sys.stderr, flush=True)
        return 1


def _latest_run(
    settings: Settings, key: str, etag: str | None, since: datetime
) -> tuple[Any, ...] | None:
    """The run of the upload: the newest run of ``key`` recorded since ``since``, or the live or
    succeeded run of the same bytes (``etag``) that accounts for it; with its status as every
    reader sees it."""
    conn = psycopg2.connect(settings.database_url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT run_id, run_status(runs), run_error(runs), status_reason FROM runs"
                " WHERE source_bucket = %s AND source_key = %s"
                "   AND (created_at >= %s OR source_etag = %s AND status <> 'failed')"
                " ORDER BY created_at DESC LIMIT 1",
                (settings.raw_bucket, key, since, etag),
            )
            return cur.fetchone()
    finally:
        conn.close()


def follow_triggered_run(settings: Settings, key: str, since: datetime) -> int:
    """Wait for the run the upload triggered, printing its log as it grows; 0 once published."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    client = s3.client(settings.endpoint_url)
    etag = sources.describe(f"s3://{settings.raw_bucket}/{key}", client).source.etag
    print("waiting for the upload event to start a run ...", flush=True)
    printed, announced = 0, ""
    while time.monotonic() < deadline:
        found = _latest_run(settings, key, etag, since)
        if found:
            run_id, status, error, reason = found
            said = f"run {run_id}: {status}" + (f" ({reason})" if reason else "")
            if announced != said and status in (RunStatus.WAITING, RunStatus.QUEUED):
                print(said, flush=True)
                announced = said
            log = settings.state_dir / "runs" / f"{run_id}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            print(text[printed:], end="", flush=True)
            printed = len(text)
            if status in FINISHED:
                time.sleep(0.5)  # the job prints its summary just after publishing
                text = log.read_text(errors="replace") if log.exists() else text
                print(text[printed:], end="", flush=True)
                if status == RunStatus.FAILED:
                    print(f"run {run_id} failed: {error}", file=sys.stderr, flush=True)
                return 0 if status == RunStatus.SUCCEEDED else 1
        time.sleep(1)
    print(
        f"no finished run after {RUN_TIMEOUT_S} s: see {settings.state_dir}/pump.log",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="parquet file or dataset folder (default: a generated sample)"
    )
    default = ",".join(rules.DEFAULT_COUNTRIES)
    parser.add_argument(
        "--countries",
        default=default,
        help=f"{default} (default), all, or a list such as Peru,Latvia",
    )
    parser.add_argument(
        "--trigger", action="store_true", help="upload under incoming/ and follow the run it starts"
    )
    args = parser.parse_args(argv)

    settings = catalog.usable(from_env())[0]  # make up said why, when it has no catalog
    os.environ.update(settings.env())
    data = args.data or sample_file(settings.state_dir)
    if not data.exists():
        parser.error(f"no such file or folder: {data}")
    if args.trigger:
        since = _database_now(settings)
        return follow_triggered_run(settings, upload(settings, data, RAW_PREFIX), since)
    return run_here(settings, upload(settings, data, MANUAL_PREFIX), args.countries)


def _database_now(settings: Settings) -> datetime:
    """The database's clock (runs are timed by it)."""
    conn = psycopg2.connect(settings.database_url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT now()")
            row = cur.fetchone()
            assert row is not None  # now() is one row
            now: datetime = row[0]
            return now
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
