"""The lake's tables in the Glue Data Catalog: each run registers the partitions it wrote.

The tables, ``curated`` and ``rejected`` partitioned by ``run_id`` and ``country_key``, are
declared by the infrastructure (``infra/cloudformation/glue.yaml``; ``make up`` declares the same
locally). After writing, a run checks that each table's location and columns are what it wrote
(a table that disagrees fails the run: nothing is published), then adds one partition per country
it wrote, with the table's own storage descriptor. A partition already there (a retried run) is
left as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import types as T

#: Glue's limit of partitions per BatchCreatePartition call.
_BATCH = 100


class CatalogError(RuntimeError):
    """A lake table the run cannot register its partitions in, with what to fix."""


@functools.cache
def _glue() -> Any:  # boto3's Glue client (boto3 ships no type information)
    import boto3

    return boto3.client("glue")


def columns(schema: T.StructType, partition_keys: Iterable[str]) -> list[dict[str, str]]:
    """The data columns of ``schema`` as the catalog declares them (Hive type names)."""
    keys = set(partition_keys)
    return [
        {"Name": f.name, "Type": f.dataType.simpleString()}
        for f in schema.fields
        if f.name not in keys
    ]


def partition_folder(spark: SparkSession, names: list[str], values: list[str]) -> str:
    """A partition's folder as Spark names it (``run_id=.../country_key=...``, escaped by Spark
    itself, so that the catalog's locations are the folders written)."""
    jvm: Any = spark._jvm
    escape = jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
    return "/".join(f"{escape(n)}={escape(v)}" for n, v in zip(names, values, strict=True))


def register(
    spark: SparkSession,
    database: str,
    table: str,
    location: str,
    schema: T.StructType,
    partitions: Iterable[list[str]],
) -> int:
    """Add ``partitions`` (value lists, in the table's partition key order) of data written
    under ``location`` with ``schema`` to ``database.table``; returns how many were new."""
    name = f"{database}.{table}"
    try:
        declared = _glue().get_table(DatabaseName=database, Name=table)["Table"]
    except _glue().exceptions.EntityNotFoundException:
        raise CatalogError(
            f"the catalog table {name} does not exist: the glue stack declares it"
            " in the cloud, make up locally"
        ) from None
    storage = declared["StorageDescriptor"]
    keys = [k["Name"] for k in declared.get("PartitionKeys", [])]
    if storage["Location"].rstrip("/") != location.rstrip("/"):
        raise CatalogError(
            f"the catalog table {name} is at {storage['Location']}, the run wrote"
            f" to {location}: point one at the other"
        )
    wanted = [{"Name": c["Name"], "Type": c["Type"]} for c in storage["Columns"]]
    written = columns(schema, keys)
    if wanted != written:
        raise CatalogError(
            f"the catalog table {name} declares the columns {_shown(wanted)}, the"
            f" run wrote {_shown(written)}: update the table"
        )
    root = location.rstrip("/")
    entries = [
        {
            "Values": values,
            "StorageDescriptor": {
                **storage,
                "Location": f"{root}/{partition_folder(spark, keys, values)}/",
            },
        }
        for values in partitions
    ]
    new = 0
    for start in range(0, len(entries), _BATCH):
        batch = entries[start : start + _BATCH]
        answer = _glue().batch_create_partition(
            DatabaseName=database, TableName=table, PartitionInputList=batch
        )
        errors = answer.get("Errors", [])
        failed = [e for e in errors if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"]
        if failed:
            detail = failed[0]["ErrorDetail"]
            reason = f"{detail['ErrorCode']}: {detail.get('ErrorMessage', '')}"
            raise CatalogError(f"registering {len(failed)} partition(s) of {name} failed: {reason}")
        new += len(batch) - len(errors)
    return new


def _shown(cols: list[dict[str, str]]) -> str:
    return ", ".join(f"{c['Name']} {c['Type']}" for c in cols)
