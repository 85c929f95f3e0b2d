"""What a run reads: one object, or every data object of a dataset folder, and how uploads are
told apart; parquet is judged by its bytes, never by its name.

Under ``incoming/`` of the raw bucket, an object directly in the prefix is a file of its own; the
objects below a folder (``incoming/<folder>/...``, partition folders included) are the parts of
one dataset, as Spark, Glue, Hive and awswrangler write a table. Within a dataset folder a name
starting with ``_`` or ``.`` at any level is metadata (Hadoop's rule: ``_SUCCESS``,
``_temporary/``, ``.crc`` files), never data; ``_SUCCESS`` at a dataset's top is its completion
marker. Zero-byte keys ending in ``/`` (or Hadoop's ``_$folder$``) are folder placeholders.

boto3 only, and only through the client the caller passes: the upload handler (Lambda) and the job
share this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chalicelib.runs import Source

INCOMING = "incoming/"
MARKER = "_SUCCESS"
PARQUET_MAGIC = b"PAR1"
_PLACEHOLDER_SUFFIXES = ("/", "_$folder$")
_PREVIEW_BYTES = 48


class InputError(ValueError):
    """An input that cannot be processed as a whole: missing, not parquet, a column missing or of
    an unusable type. The run fails with this message; nothing is published."""


def hidden(relative_key: str) -> bool:
    """Whether a key (relative to its prefix) is metadata: a folder or name starting _ or ."""
    return any(part.startswith(("_", ".")) for part in relative_key.split("/") if part)


def placeholder(key: str, size: int) -> bool:
    return size == 0 and key.endswith(_PLACEHOLDER_SUFFIXES)


def dataset_of(key: str, root: str = INCOMING) -> str | None:
    """The dataset folder (``incoming/<folder>/``) an uploaded key belongs to; ``None`` for a
    file directly under ``root``."""
    folder, slash, _ = key.removeprefix(root).partition("/")
    return f"{root}{folder}/" if slash and folder else None


class ObjectKind(StrEnum):
    """What an object created under ``incoming/`` is, which decides what it becomes."""

    FILE = "file"  # a history file of its own: a run
    PART = "part"  # a part of a dataset folder: the folder's run, once it is complete
    MARKER = "marker"  # a dataset's ``_SUCCESS``: its folder is complete
    METADATA = "metadata"  # what readers of the data skip (``_``/``.`` names, checksums)
    PLACEHOLDER = "placeholder"  # a console's "folder" object


def kind_of(key: str, size: int, root: str = INCOMING) -> ObjectKind:
    """What an object created under ``root`` is.

    Every object directly under ``root`` is a file of its own (``_history.parquet`` included),
    but for a ``_SUCCESS`` marker and a ``.crc`` checksum; in a dataset folder, Hadoop's rule
    holds (a name starting with ``_`` or ``.`` at any level below it is metadata, as every
    reader of the dataset sees it).
    """
    if placeholder(key, size):
        return ObjectKind.PLACEHOLDER
    dataset = dataset_of(key, root)
    if dataset is None:
        name = key.removeprefix(root)
        metadata = name == MARKER or name.lower().endswith(".crc")
        return ObjectKind.METADATA if metadata else ObjectKind.FILE
    relative = key.removeprefix(dataset)
    if relative == MARKER:
        return ObjectKind.MARKER
    return ObjectKind.METADATA if hidden(relative) else ObjectKind.PART


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


@dataclass(frozen=True)
class Described:
    """A run's input: its record (bucket, key or prefix, ETag) and the data objects it holds.

    ``objects`` are ``(key or path, size)`` in key order: exactly what the run reads, so an
    object landing after the description is never read in its name.
    """

    source: Source
    objects: tuple[tuple[str, int], ...]

    def uris(self) -> list[str]:
        if self.source.bucket is None:
            return [key for key, _ in self.objects]
        return [f"s3://{self.source.bucket}/{key}" for key, _ in self.objects]


def data_of(prefix: str, objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data objects among objects listed under a prefix: metadata and placeholders left out."""
    return [
        obj
        for obj in objects
        if not placeholder(obj["Key"], obj["Size"]) and not hidden(obj["Key"].removeprefix(prefix))
    ]


def data_objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The data objects under a prefix, in key order."""
    return data_of(prefix, listed(s3, bucket, prefix))


def listed(s3: Any, bucket: str, prefix: str, start_after: str = "") -> Iterator[dict[str, Any]]:
    """Every object under a prefix (metadata and placeholders included), in key order."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, StartAfter=start_after
    )
    for page in pages:
        yield from page.get("Contents", [])


def multipart_uploads(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The multipart uploads in progress under a prefix (``Key``, ``Initiated``): objects still
    being written, which no listing shows yet."""
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
    return [upload for page in pages for upload in page.get("Uploads", [])]


def version_time(moment: datetime) -> datetime:
    """An object's time as every S3 call states it: to the second (a listing may say more)."""
    return moment.replace(microsecond=0)


def _digest(objects: list[dict[str, Any]]) -> str:
    """An ETag for a set of objects: any change of a key or an object makes a new one."""
    lines = "\n".join(f"{o['Key']} {o['ETag'].strip(chr(34))}" for o in objects)
    return f"prefix-{hashlib.md5(lines.encode(), usedforsecurity=False).hexdigest()}-{len(objects)}"


def described_folder(bucket: str, prefix: str, objects: list[dict[str, Any]]) -> Described:
    """A folder of listed objects as a run's input: its digest as the ETag, its newest object's
    time."""
    modified = max((version_time(o["LastModified"]) for o in objects), default=None)
    source = Source(bucket, prefix, _digest(objects), modified, len(objects))
    return Described(source, tuple((o["Key"], o["Size"]) for o in objects))


def describe(uri: str, s3: Any = None) -> Described:
    """The input at ``uri``: an object, an ``s3://bucket/prefix/`` (every data object under it),
    a local file or a local folder. Raises :class:`InputError` when it holds no data."""
    if not is_s3(uri):
        return _describe_local(Path(uri))
    bucket, key = split_s3(uri)
    if not key or key.endswith("/"):
        objects = data_objects(s3, bucket, key)
        if not objects:
            raise InputError(f"no data object under {uri}")
        return described_folder(bucket, key, objects)
    # Lazily: S3's library, only where S3 is read.
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:  # S3 said 404 or 403, or could not be reached
        raise InputError(f"cannot read {uri}: {exc}") from exc
    etag = head["ETag"].strip('"')
    return Described(
        Source(bucket, key, etag, version_time(head["LastModified"]), 1),
        ((key, head["ContentLength"]),),
    )


def _describe_local(path: Path) -> Described:
    path = path.resolve()
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not hidden(p.relative_to(path).as_posix())
        )
        if not files:
            raise InputError(f"no data file under {path}")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"no such file or folder: {path}")
    modified = datetime.fromtimestamp(max(f.stat().st_mtime for f in files), UTC)
    source = Source(None, str(path), None, modified, len(files))
    return Described(source, tuple((str(f), f.stat().st_size) for f in files))


def parquet_problem(name: str, size: int, head: bytes, tail: bytes) -> str | None:
    """Why the object ``name`` is not parquet, judged by its first and last bytes; ``None`` when
    it is. A parquet file starts and ends with ``PAR1``, whatever its name."""
    if size >= 12 and head.startswith(PARQUET_MAGIC) and tail.endswith(PARQUET_MAGIC):
        return None
    expected = "expected parquet (a file that starts and ends with the bytes PAR1)"
    if size == 0:
        return f"{name} is not parquet: it is empty (0 bytes); {expected}"
    if head.startswith(PARQUET_MAGIC):
        return (
            f"{name} is not parquet: it starts like parquet but does not end with PAR1"
            f" (cut short or still being written: {size:,} bytes); {expected}"
        )
    return f"{name} is not parquet: it holds {_what(head)}; {expected}"


def _what(head: bytes) -> str:
    """A few words on what a file's first bytes look like."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data (parquet compresses inside the file: upload it as written)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (an Excel workbook, or zipped files)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting {head[:8].hex(' ')}"
    preview = text[:_PREVIEW_BYTES].replace("\n", "\\n")
    if "," in text or ";" in text or "\t" in text:
        return f"text that looks like CSV ({preview!r}...)"
    if text.lstrip().startswith(("{", "[")):
        return f"text that looks like JSON ({preview!r}...)"
    return f"text ({preview!r}...)"


def s3_parquet_problem(s3: Any, bucket: str, key: str, size: int) -> str | None:
    """:func:`parquet_problem` of an S3 object, from two ranged reads of a few bytes."""
    if size == 0:
        return parquet_problem(f"s3://{bucket}/{key}", 0, b"", b"")
    head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{_PREVIEW_BYTES - 1}")
    tail = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-4")
    return parquet_problem(f"s3://{bucket}/{key}", size, head["Body"].read(), tail["Body"].read())


def file_parquet_problem(path: Path, name: str) -> str | None:
    """:func:`parquet_problem` of a local file (named ``name`` in messages)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_PREVIEW_BYTES)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    return parquet_problem(name, size, head, tail)
