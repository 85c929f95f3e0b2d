"""A JVM class-data archive of what a job run loads, so local Spark sessions start sooner.

Java's class-data sharing maps the classes an earlier run loaded from one file instead of
finding, reading and verifying thousands of them in Spark's jars one by one. On a 2-core laptop
a session then starts in about 2 s instead of 3.5, and a run's first queries skip most of their
class loading: about 4 s of a 16 s run on the real history file. Local only: Glue starts its own
JVMs. ``glue_jobs.session.local`` uses the archive named by
``SPARK_CLASS_ARCHIVE`` when it exists; a stale one (another Java or PySpark) is ignored silently.

The archive is made once per Java and PySpark install (about 30 s, 130 MB in the default state
folder, shared by every stack of this checkout): a child process runs the job's transform on a
small sample and archives its classes at exit.

    python -m infra.local.spark_classes    # make it if missing (``stack up`` does)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.local.paths import REPO_ROOT

WARM_UP_TIMEOUT_S = 300


def archive_path(state_dir: Path) -> Path:
    """The archive in ``state_dir`` for this Java and this PySpark install (a new one when either
    changes); found without importing pyspark, so that naming it costs nothing."""
    java = Path(shutil.which("java") or "java").resolve()
    spec = importlib.util.find_spec("pyspark")
    jars = Path(spec.origin).parent / "jars" if spec and spec.origin else Path("pyspark")
    version = importlib.metadata.version("pyspark") if spec else ""
    stamp = f"{java}:{java.stat().st_mtime if java.exists() else ''}:{jars}:{version}"
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    return state_dir / f"spark-classes-{digest}.jsa"


def ensure(state_dir: Path) -> str:
    """Make the archive if it is missing; say what happened in a word or three."""
    target = archive_path(state_dir)
    if target.is_file():
        return "reused"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial")
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CLASS_ARCHIVE"}
    archiving = f"-XX:ArchiveClassesAtExit={partial}"
    env["PYSPARK_SUBMIT_ARGS"] = f"--driver-java-options {archiving} pyspark-shell"
    try:
        subprocess.run(
            [sys.executable, "-m", "infra.local.spark_classes", "--warm-up"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            timeout=WARM_UP_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        partial.unlink(missing_ok=True)
        return f"not made: {type(exc).__name__}"  # Spark starts without it, as before
    if not partial.is_file():
        return "not made: this Java cannot archive"
    partial.replace(target)  # atomic: a reader sees no archive or a whole one
    return "made"


def warm_up() -> None:
    """Run the job's transform on a small sample, then let the JVM exit (and archive)."""
    from glue_jobs import session
    from glue_jobs.lake_io import Lake
    from glue_jobs.pipeline import JobOptions, transform
    from scripts.generate_data import write

    with tempfile.TemporaryDirectory(prefix="spark-classes-") as folder:
        sample = write(Path(folder) / "sample.parquet", rows=2_000, seed=1)
        spark = session.local()
        options = JobOptions(str(sample), "all", "warm-up", f"{folder}/c", f"{folder}/r")
        with Lake(spark) as lake:
            transform(spark, lake, options)
        gateway = spark.sparkContext._gateway
        assert gateway is not None  # a local session launched its JVM through it
        spark.stop()
        gateway.proc.stdin.close()  # the JVM exits on end of input, archiving as it goes
        gateway.proc.wait(timeout=WARM_UP_TIMEOUT_S)


if __name__ == "__main__":
    if sys.argv[1:] == ["--warm-up"]:
        warm_up()
    else:
        from infra.local import settings  # it names this module's archive: imported late

        print(ensure(settings.from_env().state_dir))
