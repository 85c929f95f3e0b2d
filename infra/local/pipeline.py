"""``make pipeline`` / ``make run``: upload a parquet file to the local raw bucket, then run the
Glue job on it in Spark local mode and print the run's summary.

    python -m infra.local.pipeline [--data PATH] [--countries Peru|all|Peru,Latvia]

Without ``--data`` a deterministic synthetic sample is generated (once) under ``.state/``.
Expects the local stack to be up (``python -m infra.local.stack up``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from infra.local import s3
from infra.local.settings import CURATED_PREFIX, RAW_PREFIX, REJECTED_PREFIX, from_env

SAMPLE_ROWS = 300_000
SAMPLE_SEED = 7


def sample_file(state_dir: Path, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> Path:
    """The generated sample for ``make run`` (generated on first use, then reused)."""
    from scripts.generate_data import write

    path = state_dir / "sample" / f"voucher_sample_{rows}_{seed}.parquet.gzip"
    if not path.exists():
        print(f"generating {rows:,} synthetic rows (seed {seed}) into {path}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, rows=rows, seed=seed)
    return path


def upload(settings, path: Path) -> str:
    """Put ``path`` under the raw bucket's ``incoming/`` prefix; return its ``s3://`` URI."""
    key = f"{RAW_PREFIX}{path.name}"
    started = time.monotonic()
    s3.client(settings.endpoint_url).upload_file(str(path), settings.raw_bucket, key)
    size_mb = path.stat().st_size / 1e6
    print(
        f"uploaded {path} ({size_mb:.1f} MB) to s3://{settings.raw_bucket}/{key} "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return f"s3://{settings.raw_bucket}/{key}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="parquet file (default: a generated sample)")
    parser.add_argument("--countries", default="Peru", help="Peru (default), all, or Peru,Latvia")
    args = parser.parse_args(argv)

    settings = from_env()
    os.environ.update(settings.env())
    data = args.data or sample_file(settings.state_dir)
    if not data.is_file():
        parser.error(f"no such file: {data}")
    source = upload(settings, data)

    from glue_jobs import voucher_selection_job

    return voucher_selection_job.main(
        [
            "voucher_selection_job",
            "--source",
            source,
            "--countries",
            args.countries,
            "--curated_location",
            f"s3://{settings.lake_bucket}/{CURATED_PREFIX}",
            "--rejected_location",
            f"s3://{settings.lake_bucket}/{REJECTED_PREFIX}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
