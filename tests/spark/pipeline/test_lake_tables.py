"""The lake as Glue Data Catalog tables on the local endpoint: after a run, ``curated`` and
``rejected`` list the run's partitions with the folders it wrote and the columns it wrote, and
reading the tables through the catalog (awswrangler, as an analyst would) gives the rows the run
reported; a table that disagrees with what the job writes fails the run before it publishes."""

from __future__ import annotations

import io
from dataclasses import replace

import awswrangler as wr
import pyarrow.parquet as pq
import pytest

from glue_jobs import catalog
from infra.local import catalog as local_catalog
from infra.local import s3 as local_s3
from tests.helpers import fetch, run_job, runs_of, sample_bytes, served, upload

TABLES = ("curated", "rejected")


@pytest.fixture
def glue(local_stack, stack):
    return local_s3.client(local_stack.endpoint_url, "glue")


def _partitions(glue, database: str, table: str) -> dict[tuple[str, ...], dict]:
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table)
    return {tuple(p["Values"]): p for page in pages for p in page["Partitions"]}


def _stats(db, run_id: str) -> dict[str, dict[str, int]]:
    """Rows kept and rejected per country, as the run reported them."""
    rows = fetch(
        db,
        "SELECT country_key, rows_kept, rows_in - rows_kept FROM run_country_stats"
        " WHERE run_id = %s",
        run_id,
    )
    return {key: {"curated": kept, "rejected": rejected} for key, kept, rejected in rows}


def _parquet_columns(s3, bucket: str, location: str) -> list[str]:
    prefix = location.split(f"s3://{bucket}/", 1)[1]
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        if o["Key"].endswith(".parquet")
    ]
    names = {
        tuple(
            pq.read_schema(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).names
        )
        for key in keys
    }
    [columns] = names  # every file of the folder alike
    return list(columns)


def test_a_run_registers_its_partitions_and_the_tables_read_back_its_rows(
    stack, glue, s3, db, tmp_path
):
    source = upload(s3, stack, "incoming/tables.parquet", sample_bytes(tmp_path, 6_000, seed=17))
    run_id = run_job(stack, source, countries="all")
    stats = _stats(db, run_id)
    assert len(stats) >= 3 and all(s["curated"] and s["rejected"] for s in stats.values())
    for table in TABLES:
        declared = glue.get_table(DatabaseName=stack.catalog, Name=table)["Table"]
        partitions = {
            values: p
            for values, p in _partitions(glue, stack.catalog, table).items()
            if values[0] == run_id
        }  # the session's other tests register runs too
        assert set(partitions) == {(run_id, key) for key in stats}
        for (_, key), partition in partitions.items():
            storage = partition["StorageDescriptor"]
            assert storage["Location"] == (
                f"s3://{stack.lake}/{table}/run_id={run_id}/country_key={key}/"
            )
            assert storage["Columns"] == declared["StorageDescriptor"]["Columns"]
            assert _parquet_columns(s3, stack.lake, storage["Location"]) == [
                c["Name"] for c in storage["Columns"]
            ]
        # As an analyst reads it: the catalog gives the partitions, awswrangler the rows.
        rows = wr.s3.read_parquet_table(
            table=table, database=stack.catalog, partition_filter=lambda p: p["run_id"] == run_id
        )
        counted = rows.groupby("country_key").size().to_dict()
        assert counted == {key: s[table] for key, s in stats.items()}


def test_registering_again_adds_nothing_and_changes_nothing(stack, glue, s3, tmp_path, spark):
    source = upload(s3, stack, "incoming/again.parquet", sample_bytes(tmp_path, 2_000, seed=5))
    run_id = run_job(stack, source, countries="Peru")
    before = _partitions(glue, stack.catalog, "curated")
    assert set(before) >= {(run_id, "peru")}
    columns = glue.get_table(DatabaseName=stack.catalog, Name="curated")["Table"][
        "StorageDescriptor"
    ]["Columns"]
    ddl = ", ".join(
        ["run_id string", *(f"`{c['Name']}` {c['Type']}" for c in columns), "country_key string"]
    )
    written = spark.createDataFrame([], ddl).schema  # the schema the run wrote, as declared
    again = catalog.register(
        spark, stack.catalog, "curated", f"s3://{stack.lake}/curated/", written, [[run_id, "peru"]]
    )
    assert again == 0 and _partitions(glue, stack.catalog, "curated") == before


def test_a_table_that_disagrees_with_the_job_fails_the_run_before_it_publishes(
    stack, glue, s3, db, tmp_path, local_stack
):
    settings = replace(local_stack.settings, lake_bucket=stack.lake, catalog_database=stack.catalog)
    table = glue.get_table(DatabaseName=stack.catalog, Name="curated")["Table"]
    storage = {
        **table["StorageDescriptor"],
        "Columns": table["StorageDescriptor"]["Columns"][:-1],
    }  # one column forgotten
    glue.update_table(
        DatabaseName=stack.catalog,
        TableInput={
            "Name": "curated",
            "StorageDescriptor": storage,
            "PartitionKeys": table["PartitionKeys"],
            "TableType": table["TableType"],
        },
    )
    try:
        source = upload(
            s3, stack, "incoming/disagrees.parquet", sample_bytes(tmp_path, 2_000, seed=9)
        )
        with pytest.raises(catalog.CatalogError, match="declares the columns"):
            run_job(stack, source, countries="Peru")
        [(_, status, error)] = runs_of(db, "incoming/disagrees.parquet")
        assert status == "failed" and f"{stack.catalog}.curated" in error
        assert served(db) == {}
    finally:
        assert local_catalog.ensure(settings) == "updated"  # make up puts it back
