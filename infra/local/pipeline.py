"""Runs of the pipeline on the local stack, for ``make pipeline`` and ``make run``.

    python -m infra.local.pipeline --data PATH [--countries Peru|all|Peru,Latvia]
    python -m infra.local.pipeline --trigger [--data PATH]

By default the file goes under the raw bucket's ``manual/`` prefix (no event fires there) and the
Glue job runs on it here, in Spark local mode, for the countries asked. With ``--trigger`` it goes
under ``incoming/`` as a real upload: S3 notifies the queue, the event pump invokes the upload
handler, the handler launches the job, and this command follows that run's log until it is
published or failed. Without ``--data`` a deterministic synthetic sample is used. Expects the local
stack up (``python -m infra.local.stack up``; with ``--trigger`` also ``python -m infra.local.events
start``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg2

from infra.local import s3
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


def upload(settings: Settings, path: Path, prefix: str) -> tuple[str, str]:
    """Put ``path`` under ``prefix`` of the raw bucket; return its key and ETag."""
    key = f"{prefix}{path.name}"
    started = time.monotonic()
    client = s3.client(settings.endpoint_url)
    client.upload_file(str(path), settings.raw_bucket, key)
    etag = client.head_object(Bucket=settings.raw_bucket, Key=key)["ETag"].strip('"')
    print(
        f"uploaded {path} ({path.stat().st_size / 1e6:.1f} MB) to "
        f"s3://{settings.raw_bucket}/{key} in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return key, etag


def run_here(settings: Settings, key: str, countries: str) -> int:
    """Run the Glue job in this process on ``key`` and print its summary."""
    from glue_jobs import voucher_selection_job
    from glue_jobs.pipeline import error_message

    try:
        return voucher_selection_job.main([
            "voucher_selection_job",
            "--source", f"s3://{settings.raw_bucket}/{key}",
            "--countries", countries,
            "--curated_location", f"s3://{settings.lake_bucket}/{CURATED_PREFIX}",
            "--rejected_location", f"s3://{settings.lake_bucket}/{REJECTED_PREFIX}",
        ])  # fmt: skip
    except Exception as exc:  # the run record holds the same message
        print(f"run failed: {error_message(exc)}", file=sys.stderr, flush=True)
        return 1


def _latest_run(settings: Settings, key: str, etag: str) -> tuple[str, str, str | None] | None:
    with psycopg2.connect(settings.database_url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, status, error FROM runs WHERE source_bucket = %s AND source_key = %s"
            " AND source_etag = %s ORDER BY created_at DESC LIMIT 1",
            (settings.raw_bucket, key, etag),
        )
        return cur.fetchone()


def follow_triggered_run(settings: Settings, key: str, etag: str) -> int:
    """Wait for the run the upload triggered, printing its log as it grows; 0 once published."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    print("waiting for the upload event to start a run ...", flush=True)
    printed, announced = 0, False
    while time.monotonic() < deadline:
        found = _latest_run(settings, key, etag)
        if found:
            run_id, status, error = found
            if not announced:
                print(f"run {run_id}: {status}", flush=True)
                announced = True
            log = settings.state_dir / "runs" / f"{run_id}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            print(text[printed:], end="", flush=True)
            printed = len(text)
            if status in ("succeeded", "failed"):
                time.sleep(0.5)  # the job prints its summary just after publishing
                text = log.read_text(errors="replace") if log.exists() else text
                print(text[printed:], end="", flush=True)
                if status == "failed":
                    print(f"run {run_id} failed: {error}", file=sys.stderr, flush=True)
                return 0 if status == "succeeded" else 1
        time.sleep(1)
    print(f"no finished run after {RUN_TIMEOUT_S} s: see {settings.state_dir}/pump.log",
          file=sys.stderr)  # fmt: skip
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="parquet file (default: a generated sample)")
    parser.add_argument("--countries", default="Peru", help="Peru (default), all, or Peru,Latvia")
    parser.add_argument(
        "--trigger", action="store_true", help="upload under incoming/ and follow the run it starts"
    )
    args = parser.parse_args(argv)

    settings = from_env()
    os.environ.update(settings.env())
    data = args.data or sample_file(settings.state_dir)
    if not data.is_file():
        parser.error(f"no such file: {data}")
    if args.trigger:
        return follow_triggered_run(settings, *upload(settings, data, RAW_PREFIX))
    key, _ = upload(settings, data, MANUAL_PREFIX)
    return run_here(settings, key, args.countries)


if __name__ == "__main__":
    sys.exit(main())
