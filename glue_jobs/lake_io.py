"""Where the job's data lives, and the only module that knows Glue from a laptop.

On Glue, Spark reads and writes ``s3://`` itself. The pyspark wheel has no S3 filesystem, so in
local mode objects are streamed to a temporary folder with boto3 before Spark reads them, and
outputs are written to that folder and uploaded. Local paths are read in place.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession

from chalicelib.runs import Source
from glue_jobs.transforms import InputError

_IGNORED_PREFIXES = ("_", ".")  # Spark/Hadoop markers such as _SUCCESS and .crc files


@functools.cache
def _s3():
    import boto3  # lazily: honours AWS_ENDPOINT_URL, so the same code reaches moto or LocalStack

    return boto3.client("s3")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def _objects(bucket: str, prefix: str) -> list[dict]:
    """Data objects under a prefix (markers and zero-byte folder keys skipped), sorted by key."""
    pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(
        (
            obj
            for page in pages
            for obj in page.get("Contents", [])
            if obj["Size"] > 0 and not Path(obj["Key"]).name.startswith(_IGNORED_PREFIXES)
        ),
        key=lambda obj: obj["Key"],
    )


def _source_objects(uri: str) -> list[dict]:
    bucket, key = split_s3(uri)
    if key.endswith("/") or not key:
        objects = _objects(bucket, key)
        if not objects:
            raise InputError(f"no parquet object under {uri}")
        return objects
    try:
        head = _s3().head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore's ClientError; its message says 404 or 403
        raise InputError(f"cannot read {uri}: {exc}") from exc
    return [
        {"Key": key, "ETag": head["ETag"], "Size": head["ContentLength"],
         "LastModified": head["LastModified"]}
    ]  # fmt: skip


def describe_source(uri: str) -> Source:
    """The run record's view of the input: bucket, key (or prefix) and ETag.

    A prefix's ETag is a digest of its objects' keys and ETags, so any change makes a new one.
    An input that cannot be found has no ETag; reading it then fails the run with the reason.
    """
    if not is_s3(uri):
        path = Path(uri).resolve()
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC) if path.exists() else None
        return Source(bucket=None, key=str(path), modified_at=modified)
    bucket, key = split_s3(uri)
    try:
        objects = _source_objects(uri)
    except InputError:
        return Source(bucket, key)
    modified = max(o["LastModified"] for o in objects)
    if len(objects) == 1 and objects[0]["Key"] == key:
        return Source(bucket, key, objects[0]["ETag"].strip('"'), modified)
    digest = hashlib.md5(
        "\n".join(f"{o['Key']} {o['ETag']}" for o in objects).encode(), usedforsecurity=False
    )
    return Source(bucket, key, f"prefix-{digest.hexdigest()}-{len(objects)}", modified)


class Lake:
    """Reads the input and writes the outputs, natively on Glue or through a staging folder."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.native_s3 = _spark_has_s3(spark)
        self._staging = Path(tempfile.mkdtemp(prefix="voucher-lake-"))

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def read_parquet(self, uri: str) -> DataFrame:
        """The input as a DataFrame; unreadable parquet is an :class:`InputError`."""
        path = uri if self.native_s3 or not is_s3(uri) else self._download(uri)
        try:
            return self.spark.read.parquet(path)
        except (PySparkException, Py4JJavaError) as exc:
            raise InputError(
                f"{uri} is not a readable parquet file or folder: {cause_text(exc)}"
            ) from exc

    def write_parquet(self, df: DataFrame, uri: str, partition_by: list[str]) -> str:
        """Write ``df`` under ``uri``, replacing only the partitions it holds (reruns are safe).

        Returns where Spark reads back what was written: ``uri`` itself, or its staged copy.
        """
        if self.native_s3 or not is_s3(uri):
            df.write.mode("overwrite").partitionBy(*partition_by).parquet(uri)
            return uri
        local = self._staging / "out" / hashlib.md5(uri.encode(), usedforsecurity=False).hexdigest()
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(str(local))
        self._upload(local, uri)
        return str(local)

    def read_written(self, location: str) -> DataFrame | None:
        """The parquet a write left under ``location`` (a partition's folder); ``None`` when it
        left nothing there (Spark writes no folder for an empty partition)."""
        context = self.spark.sparkContext
        path = context._jvm.org.apache.hadoop.fs.Path(location)
        if not path.getFileSystem(context._jsc.hadoopConfiguration()).exists(path):
            return None
        return self.spark.read.parquet(location)

    def _download(self, uri: str) -> str:
        bucket, _ = split_s3(uri)
        folder = self._staging / "in"
        folder.mkdir(parents=True, exist_ok=True)
        for n, obj in enumerate(_source_objects(uri)):
            _s3().download_file(bucket, obj["Key"], str(folder / f"part-{n:05d}.parquet"))
        return str(folder)

    def _upload(self, local: Path, uri: str) -> None:
        bucket, prefix = split_s3(uri.rstrip("/") + "/")
        files = [
            p for p in local.rglob("*") if p.is_file() and not p.name.startswith(_IGNORED_PREFIXES)
        ]
        for partition in {f.parent.relative_to(local) for f in files}:
            for obj in _objects(bucket, f"{prefix}{partition.as_posix()}/"):
                _s3().delete_object(Bucket=bucket, Key=obj["Key"])
        for f in files:
            _s3().upload_file(str(f), bucket, f"{prefix}{f.relative_to(local).as_posix()}")


def _spark_has_s3(spark: SparkSession) -> bool:
    """Whether this Spark has a filesystem for ``s3://`` (Glue, EMR) or not (the pyspark wheel)."""
    jvm = spark.sparkContext._jvm
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(
            "s3", spark.sparkContext._jsc.hadoopConfiguration()
        )
        return True
    except Py4JJavaError:
        return False


def cause_text(exc: Exception) -> str:
    """The first line of what really went wrong in a (Spark) failure.

    Spark wraps a cause in its own exceptions ("Job aborted due to stage failure", "Exception
    thrown in awaitResult"): the outermost Java cause that is not one of them names the problem
    (a file that is not parquet, a page that cannot be read, memory); else the innermost does.
    """
    cause = getattr(exc, "java_exception", None)
    if cause is not None:
        while cause.getCause() is not None and (
            cause.getClass().getName() == "org.apache.spark.SparkException"
        ):
            cause = cause.getCause()
    lines = str(cause.toString() if cause is not None else exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
