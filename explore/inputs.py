"""The input to profile: which one by default, and how it is stored (read from parquet footers).

An input is a local parquet file or folder, or ``s3://bucket/key`` (or a prefix) read with
pyarrow against ``AWS_ENDPOINT_URL`` when it is set (the local moto endpoint).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs

from chalicelib.sources import InputError
from glue_jobs.lake_io import is_s3, split_s3
from infra.local.paths import REAL_FILE
from scripts.generate_data import write

SAMPLE_ROWS = 100_000
SAMPLE_SEED = 7


def default_source(
    folder: Path, real_file: Path = REAL_FILE, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED
) -> str:
    """The real history file when present, else a generated sample (gzip, like the real file)
    kept in ``folder``."""
    if real_file.exists():
        return str(real_file)
    sample = folder / f"sample_{rows}_seed{seed}.parquet.gzip"
    if not sample.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = write(folder / f".{sample.name}.partial", rows, seed, compression="gzip")
        partial.replace(sample)
    return str(sample)


def _filesystem(source: str) -> tuple[fs.FileSystem, str]:
    if not is_s3(source):
        return fs.LocalFileSystem(), str(Path(source).resolve())
    endpoint = urlparse(os.environ.get("AWS_ENDPOINT_URL", ""))
    options = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    if endpoint.netloc:
        options |= {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme or "https"}
    bucket, key = split_s3(source)
    return fs.S3FileSystem(**options), f"{bucket}/{key}".rstrip("/")


def stored_schema(source: str) -> dict:
    """Files, rows, bytes and each column's arrow, physical and logical type as written (a
    nested column is a ``group`` of leaf columns, its logical type ``LIST``, ``MAP`` or none)."""
    filesystem, path = _filesystem(source)
    try:
        files = sorted(ds.dataset(path, filesystem=filesystem, format="parquet").files)
        if not files:
            raise InputError(f"no parquet file in {source}")
        footers = []
        for name in files:
            with filesystem.open_input_file(name) as handle:
                footers.append(pq.ParquetFile(handle).metadata)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {source} as parquet: {exc}") from exc
    first = footers[0]
    columns, leaf = [], 0
    for field in first.schema.to_arrow_schema():
        column = first.schema.column(leaf)  # the first of the field's leaf columns
        nested = _leaves(field.type) > 1 or column.path != field.name
        columns.append(
            {
                "column": field.name,
                "arrow_type": str(field.type),
                "physical_type": "group" if nested else column.physical_type,
                "logical_type": _nested_logical(field.type) if nested else column.logical_type.type,
                "compression": first.row_group(0).column(leaf).compression
                if first.num_row_groups
                else None,
            }
        )
        leaf += _leaves(field.type)
    return {
        "files": len(files),
        "rows": sum(f.num_rows for f in footers),
        "row_groups": sum(f.num_row_groups for f in footers),
        "bytes": sum(info.size for info in filesystem.get_file_info(files)),
        "created_by": first.created_by,
        "columns": columns,
    }


def _leaves(arrow_type: pa.DataType) -> int:
    """How many parquet leaf columns store a column of ``arrow_type``."""
    if pa.types.is_struct(arrow_type):
        return sum(_leaves(arrow_type.field(i).type) for i in range(arrow_type.num_fields))
    if pa.types.is_map(arrow_type):
        return _leaves(arrow_type.key_type) + _leaves(arrow_type.item_type)
    if _is_list(arrow_type):
        return _leaves(arrow_type.value_type)
    return 1


def _is_list(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    )


def _nested_logical(arrow_type: pa.DataType) -> str:
    """The logical type parquet gives a nested column's group (a struct has none)."""
    return "MAP" if pa.types.is_map(arrow_type) else "LIST" if _is_list(arrow_type) else "NONE"
