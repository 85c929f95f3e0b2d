"""The local stack's names, ports and endpoints: the one place that defines them.

The Makefile, the tests and every local CLI take their values from here (the Makefile through
``python -m infra.local.stack env``). ``DATABASE_URL``, ``RAW_BUCKET`` and ``LAKE_BUCKET`` in the
environment override the defaults; the AWS endpoint and its dummy credentials are always local.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chalicelib import sources
from infra.local import spark_classes
from infra.local.paths import REAL_FILE, REPO_ROOT

__all__ = ["REAL_FILE", "REPO_ROOT", "Settings", "from_env"]
HOST = "127.0.0.1"
REGION = "us-east-1"
DUMMY_CREDENTIAL = "testing"
DATABASE_NAME = "voucher"
DATABASE_USER = "postgres"

#: Where uploads land in the raw bucket, and the lake layout.
RAW_PREFIX = sources.INCOMING
CURATED_PREFIX = "curated/"
REJECTED_PREFIX = "rejected/"


@dataclass(frozen=True)
class Settings:
    """One local stack: where its state lives, its ports, and the names it provisions."""

    state_dir: Path = REPO_ROOT / ".state"
    #: What serves the AWS endpoint when nothing answers on its port: moto or LocalStack.
    aws_emulator: str = "moto"
    aws_port: int = 4566
    pg_port: int = 55432
    raw_bucket: str = "voucher-raw"
    lake_bucket: str = "voucher-lake"
    #: The queue S3 notifies of uploads; its dead-letter queue takes a message after this many
    #: failed receives, each retried once the visibility timeout has passed.
    upload_queue: str = "voucher-uploads"
    #: The Glue Data Catalog database of the lake tables; empty: none (LocalStack's community
    #: edition has no Glue), and runs register no partitions.
    catalog_database: str = "voucher_selection_local"
    max_receive_count: int = 3
    visibility_timeout_s: int = 30
    #: A server to use instead of starting one (``DATABASE_URL``); ``None`` runs the local one.
    database_url_override: str | None = field(default=None)

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.aws_port}"

    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def local_database_url(self) -> str:
        return f"postgresql://{DATABASE_USER}@{HOST}:{self.pg_port}/{DATABASE_NAME}"

    @property
    def database_url(self) -> str:
        return self.database_url_override or self.local_database_url

    def aws_env(self) -> dict[str, str]:
        """The variables that point boto3 (and anything AWS-shaped) at the local endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
            "AWS_DEFAULT_REGION": REGION,
        }

    def env(self) -> dict[str, str]:
        """Every variable a local command needs (``stack env`` prints them as exports)."""
        return {
            **self.aws_env(),
            "DATABASE_URL": self.database_url,
            "RAW_BUCKET": self.raw_bucket,
            "LAKE_BUCKET": self.lake_bucket,
            "CATALOG_DATABASE": self.catalog_database,
            "UPLOAD_QUEUE": self.upload_queue,
            "JOB_LAUNCHER": "local",
            "JOB_LOG_DIR": str(self.state_dir / "runs"),
            "SPARK_CLASS_ARCHIVE": str(self.spark_class_archive),
        }

    @property
    def spark_class_archive(self) -> Path:
        """The JVM class-data archive local Spark sessions start from (``spark_classes``)."""
        return spark_classes.archive_path(self.state_dir)


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The defaults, with AWS_EMULATOR, AWS_ENDPOINT_PORT (an endpoint on another port than
    4566), DATABASE_URL, RAW_BUCKET, LAKE_BUCKET and CATALOG_DATABASE taken from the
    environment."""
    environ = os.environ if environ is None else environ
    base = Settings()
    emulator = environ.get("AWS_EMULATOR") or base.aws_emulator
    settings = replace(
        base,
        aws_emulator=emulator,
        aws_port=int(environ.get("AWS_ENDPOINT_PORT") or base.aws_port),
        raw_bucket=environ.get("RAW_BUCKET") or base.raw_bucket,
        lake_bucket=environ.get("LAKE_BUCKET") or base.lake_bucket,
        catalog_database=environ.get(
            "CATALOG_DATABASE", "" if emulator == "localstack" else base.catalog_database
        ),
        database_url_override=environ.get("DATABASE_URL") or None,
    )
    return replace(settings, **overrides)
