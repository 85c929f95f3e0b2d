"""The lake tables on the local endpoint: the Glue Data Catalog database and the ``curated`` and
``rejected`` tables the glue stack declares (``infra/cloudformation/glue.yaml``), created from
those same resources, pointed at the local lake bucket."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.deploy import templates
from infra.local import s3
from infra.local.settings import Settings

TABLES = ("CuratedTable", "RejectedTable")


def usable(settings: Settings) -> tuple[Settings, str | None]:
    """``settings`` as the endpoint can serve them, and why not when it cannot: an endpoint that
    answers Glue with 501 Not Implemented (LocalStack's free edition, whoever started it) has no
    catalog, so runs go on without registering partitions (no catalog database)."""
    if not settings.catalog_database:
        return settings, None
    try:
        s3.client(settings.endpoint_url, "glue").get_databases(MaxResults=1)
    except BotoCoreError:  # nothing answers (yet): make up starts the endpoint and judges then
        return settings, None
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 501:
            raise
        reason = (
            f"the endpoint at {settings.endpoint_url} answers Glue with 501 Not Implemented"
            f" ({exc.response.get('Error', {}).get('Message', '').strip()[:80]}); runs register"
            " no partitions"
        )
        return replace(settings, catalog_database=""), reason
    return settings, None


def declared(settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The database's and the tables' inputs as the glue stack declares them, for ``settings``'
    lake bucket and catalog database."""
    resources = templates.load(templates.path("glue"))["Resources"]
    values = {"Stage": "local", "LakeBucketName": settings.lake_bucket}
    database = {
        **resources["LakeDatabase"]["Properties"]["DatabaseInput"],
        "Name": settings.catalog_database,
    }
    tables = [templates.resolve(resources[t]["Properties"]["TableInput"], values) for t in TABLES]
    return templates.resolve(database, values), tables


def ensure(settings: Settings) -> str:
    """Create the database and its tables, or bring the tables back to their declaration (their
    partitions stay); returns what was done."""
    glue = s3.client(settings.endpoint_url, "glue")
    database, tables = declared(settings)
    done = "exists"
    try:
        glue.create_database(DatabaseInput=database)
        done = "created"
    except glue.exceptions.AlreadyExistsException:
        pass
    for table in tables:
        try:
            current = glue.get_table(DatabaseName=database["Name"], Name=table["Name"])["Table"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=database["Name"], TableInput=table)
            done = "created"
            continue
        if _shape(current) != _shape(table):
            glue.update_table(DatabaseName=database["Name"], TableInput=table)
            done = "updated" if done == "exists" else done
    return done


def _shape(table: dict[str, Any]) -> tuple[Any, ...]:
    """What a table must agree on with its declaration: location, columns, partition keys."""
    storage = table["StorageDescriptor"]
    return (
        storage["Location"],
        [(c["Name"], c["Type"]) for c in storage["Columns"]],
        [(k["Name"], k["Type"]) for k in table.get("PartitionKeys", [])],
    )


def drop(settings: Settings) -> None:
    """Remove the database and its tables (a test session's own)."""
    glue = s3.client(settings.endpoint_url, "glue")
    for table in declared(settings)[1]:
        glue.delete_table(DatabaseName=settings.catalog_database, Name=table["Name"])
    glue.delete_database(Name=settings.catalog_database)
