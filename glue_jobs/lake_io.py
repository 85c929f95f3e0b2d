"""Where the job's data lives, and the only module that knows Glue from a laptop.

On Glue, Spark reads and writes ``s3://`` itself. The pyspark wheel has no S3 filesystem, so in
local mode objects are streamed to a temporary folder with boto3 before Spark reads them, and
outputs are written to that folder and uploaded. Local paths are read in place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chalicelib import rules, sources
from chalicelib.sources import Described, InputError, is_s3, split_s3
from chalicelib.text import shown
from glue_jobs import transforms as t

#: Footers read at once (each is a small ranged read; a prefix of thousands of files stays cheap).
_FOOTER_READERS = 16


@functools.cache
def _s3() -> Any:  # boto3's S3 client (boto3 ships no type information)
    import boto3  # lazily: honours AWS_ENDPOINT_URL, so the same code reaches moto or LocalStack

    return boto3.client("s3")


def describe(uri: str) -> Described:
    """The run's input at ``uri`` (``chalicelib.sources.describe``), through this job's client."""
    return sources.describe(uri, _s3() if is_s3(uri) else None)


class Lake:
    """Reads the input and writes the outputs, natively on Glue or through a staging folder."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.native_s3 = _spark_has_s3(spark)
        self._staging = Path(tempfile.mkdtemp(prefix="voucher-lake-"))

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def read_parts(self, inputs: Described) -> list[tuple[DataFrame, str]]:
        """Exactly the described objects, as one DataFrame per distinct way their footers store the
        six input columns (one read per schema, not per file; ``transforms.unify`` makes them
        one), each with how to name its files.

        Only the six columns are read, each under its canonical name however its file spells it
        (``rules.column_key``): a column the job does not need is never looked at, whatever its
        type. Paths are read literally, never as glob patterns (:func:`literal`: ``[1]`` in a
        name is those three characters). A file that is not readable parquet, lacks a column or
        stores one twice is an :class:`InputError` naming it; nanosecond timestamps (read as
        numbers, see ``configure``) become timestamps."""
        local = self.native_s3 or inputs.source.bucket is None
        paths = inputs.uris() if local else self._download(inputs)
        names = inputs.uris()
        with ThreadPoolExecutor(max_workers=_FOOTER_READERS) as pool:
            footers = list(pool.map(self._footer, paths, names))
        groups: dict[str, tuple[Any, list[tuple[str, str]]]] = {}
        for path, name, (key, columns) in zip(paths, names, footers, strict=True):
            groups.setdefault(key, (columns, []))[1].append((path, name))
        return [self._read(columns, files, len(names)) for columns, files in groups.values()]

    def _footer(self, path: str, name: str) -> tuple[str, Any]:
        """The six input columns of a file as its footer states them (parquet ``Type``s, in
        ``rules.INPUT_COLUMNS`` order) and, as the grouping key, their parquet schema."""
        jvm: Any = self.spark.sparkContext._jvm
        conf = self.spark.sparkContext._jsc.hadoopConfiguration()
        try:
            source = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
                jvm.org.apache.hadoop.fs.Path(path), conf
            )
            reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(source)
        except Py4JJavaError as exc:
            unknown = ", ".join(shown(column) for column in self._unknown_logical_types(path))
            why = (
                f"column(s) {unknown} have a logical type that this Spark's parquet library does"
                " not know, such as FLOAT16 (a half float, pyarrow's float16), and then it reads"
                " no column of the file; store them as float32, or leave them out"
                if unknown
                else cause_text(exc)
            )
            raise InputError(f"{name} is not a readable parquet file: {why}") from exc
        try:
            schema = reader.getFooter().getFileMetaData().getSchema()
        finally:
            reader.close()
        fields = list(schema.getFields())
        stored = t.input_columns([field.getName() for field in fields], name)
        named = {field.getName(): field for field in reversed(fields)}  # the first of a name
        columns = [named[stored[c]] for c in rules.INPUT_COLUMNS]
        return "\n".join(field.toString() for field in columns), columns

    def _unknown_logical_types(self, path: str) -> list[str]:
        """The columns of a file whose logical type parquet-mr, this Spark's parquet library, does
        not know (FLOAT16 before parquet-java 1.14): it then fails to read the file's footer at
        all (a NullPointerException). Read from the footer's Thrift structure itself, which
        leaves an unknown logical type unset; none when even that cannot be read."""
        jvm: Any = self.spark.sparkContext._jvm
        conf = self.spark.sparkContext._jsc.hadoopConfiguration()
        try:
            source = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
                jvm.org.apache.hadoop.fs.Path(path), conf
            )
            stream = source.newStream()
            try:
                stream.seek(source.getLength() - 8)  # the footer's length, then PAR1
                size = sum(stream.read() << 8 * i for i in range(4))
                stream.seek(source.getLength() - 8 - size)
                meta = jvm.org.apache.parquet.format.Util.readFileMetaData(stream)
            finally:
                stream.close()
        except Py4JJavaError:
            return []
        return [
            element.getName()
            for element in meta.getSchema()
            if element.isSetLogicalType() and element.getLogicalType().getSetField() is None
        ]

    def _read(
        self, columns: list[Any], files: list[tuple[str, str]], of: int
    ) -> tuple[DataFrame, str]:
        """One Spark read of ``files`` (``(path, name)``), which store the six input columns as
        ``columns``, with an explicit schema of those columns alone: the DataFrame under the
        canonical names, and how to name the files."""
        named = _files_text([name for _, name in files], of)
        fields, unusable = [], []
        for column, field in zip(rules.INPUT_COLUMNS, columns, strict=True):
            try:
                fields.append(self._spark_field(field))
            except (PySparkException, Py4JJavaError) as exc:
                stored = field.toString().strip()
                unusable.append(f"{column} is stored as {stored!r}: {cause_text(exc)}")
        if unusable:
            raise InputError(f"{named}: input column(s) of an unusable type: {'; '.join(unusable)}")
        reader = self.spark.read.schema(T.StructType(fields))
        try:
            df = reader.parquet(*(literal(path) for path, _ in files)).toDF(*rules.INPUT_COLUMNS)
        except (PySparkException, Py4JJavaError) as exc:
            problem = f"{named} is not a readable parquet file: {cause_text(exc)}"
            raise InputError(problem) from exc
        for column, field in zip(rules.INPUT_COLUMNS, columns, strict=True):
            if field.isPrimitive() and "NANOS" in str(field.getLogicalTypeAnnotation() or ""):
                micros = f"(`{column}` - pmod(`{column}`, 1000)) div 1000"
                df = df.withColumn(column, F.expr(f"timestamp_micros({micros})"))
        return df, named

    def _spark_field(self, field: Any) -> T.StructField:
        """The Spark type of a parquet column, as Spark's own reader infers it (this session's
        settings: nanoseconds as numbers, INT96 as timestamps); Spark's error when it cannot
        read the type."""
        jvm: Any = self.spark.sparkContext._jvm
        one = jvm.java.util.ArrayList()
        one.add(field)
        struct = self._converter.convert(jvm.org.apache.parquet.schema.MessageType("one", one))
        return T.StructType.fromJson(json.loads(struct.json())).fields[0]

    @functools.cached_property
    def _converter(self) -> Any:
        jvm: Any = self.spark.sparkContext._jvm
        conf = self.spark._jsparkSession.sessionState().conf()
        return jvm.org.apache.spark.sql.execution.datasources.parquet.ParquetToSparkSchemaConverter(
            conf
        )

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

    def read_written(self, location: str, written: DataFrame) -> DataFrame:
        """What writing ``written`` left under ``location`` (a partition's folder), read with
        ``written``'s schema (nothing to infer); empty when it left nothing there (Spark writes no
        folder for an empty partition)."""
        context = self.spark.sparkContext
        jvm: Any = context._jvm
        path = jvm.org.apache.hadoop.fs.Path(location)
        if not path.getFileSystem(context._jsc.hadoopConfiguration()).exists(path):
            return written.limit(0)
        folder = location.rstrip("/").rsplit("/", 1)[1].split("=")[0]  # the partition read
        schema = T.StructType([f for f in written.schema.fields if f.name != folder])
        return self.spark.read.schema(schema).parquet(literal(location))

    def _download(self, inputs: Described) -> list[str]:
        """Stage the described objects in a local folder, each checked to be parquet."""
        folder = self._staging / "in"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, ((key, _), uri) in enumerate(zip(inputs.objects, inputs.uris(), strict=True)):
            path = folder / f"part-{n:05d}.parquet"
            _s3().download_file(inputs.source.bucket, key, str(path))
            problem = sources.file_parquet_problem(path, uri)
            if problem:
                raise InputError(problem)
            paths.append(str(path))
        return paths

    def _upload(self, local: Path, uri: str) -> None:
        bucket, prefix = split_s3(uri.rstrip("/") + "/")
        files = [
            p
            for p in local.rglob("*")
            if p.is_file() and not sources.hidden(p.relative_to(local).as_posix())
        ]
        for partition in {f.parent.relative_to(local) for f in files}:
            for obj in sources.data_objects(_s3(), bucket, f"{prefix}{partition.as_posix()}/"):
                _s3().delete_object(Bucket=bucket, Key=obj["Key"])
        for f in files:
            _s3().upload_file(str(f), bucket, f"{prefix}{f.relative_to(local).as_posix()}")


#: What Hadoop reads as a glob pattern in a path: its wildcards and its escape character.
_GLOB_CHARACTERS = re.compile(r"([\\\[\]{}*?])")


def literal(path: str) -> str:
    """``path`` as the glob pattern that matches that path alone (each of ``\\ [ ] { } * ?``
    escaped). Spark globs every path it is given to read, so ``history[1].parquet`` would read
    ``history1.parquet``; its option to turn globbing off repeats every other path once per
    path that looks like a pattern (Spark 3.5's ``checkAndGlobPathIfNecessary``)."""
    return _GLOB_CHARACTERS.sub(r"\\\1", path)


def _files_text(names: list[str], of: int) -> str:
    """How to name a group of input files in a message: the file, or the first and the count."""
    if len(names) == 1:
        return names[0]
    return f"{names[0]} (and {len(names) - 1} more of the {of} files with its schema)"


def _spark_has_s3(spark: SparkSession) -> bool:
    """Whether this Spark has a filesystem for ``s3://`` (Glue, EMR) or not (the pyspark wheel)."""
    jvm: Any = spark.sparkContext._jvm
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(
            "s3", spark.sparkContext._jsc.hadoopConfiguration()
        )
        return True
    except Py4JJavaError:
        return False


def cause_text(exc: BaseException) -> str:
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
