"""Every environment variable the runtime reads (the Lambda functions and the Glue job): its
name, type, default and meaning in one table, :data:`VARIABLES`, parsed with one error policy.

A variable is read where it is used (never at import), ``SETTING.read(env)`` with ``env``
defaulting to the process's environment: an empty or unset variable takes its default, and a
value of the wrong kind raises :class:`SettingError` naming the variable, what it must be and the
value found. The local stack's own settings (names, ports) are in ``infra/local/settings.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from chalicelib import rules

T = TypeVar("T")


class SettingError(ValueError):
    """An environment variable holds a value of the wrong kind."""


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How a variable's text becomes a value: ``parse`` returns ``None`` for a wrong value,
    and ``says`` what a right one is (for the error and the table)."""

    says: str
    parse: Callable[[str], T | None]


def whole(least: int) -> Kind[int]:
    """A whole number in ASCII digits, at least ``least``."""

    def parse(text: str) -> int | None:
        ok = text.isascii() and text.isdigit() and int(text) >= least
        return int(text) if ok else None

    return Kind(f"a whole number of at least {least}", parse)


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and value != float("inf") else None


TEXT: Kind[str] = Kind("text", lambda text: text)
SECONDS: Kind[float] = Kind("a number of seconds, 0 or more", _seconds)
FLAG: Kind[bool] = Kind("true or false", {"true": True, "false": False}.get)


def choice(*names: str) -> Kind[str]:
    return Kind(" or ".join(names), lambda text: text if text in names else None)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: ``name``, its ``kind``, its ``default`` and what it means."""

    name: str
    kind: Kind[T]
    default: T
    meaning: str
    #: Whether a function cannot do without it (``default`` is then never used).
    required: bool = False

    def read(self, env: Mapping[str, str] | None = None) -> T:
        """Its value in ``env`` (the process's environment by default)."""
        return self.value_of((os.environ if env is None else env).get(self.name))

    def value_of(self, text: str | None) -> T:
        """Its value from ``text`` (e.g. a job argument standing for it; empty: the default)."""
        text = (text or "").strip()
        if not text and self.required:
            raise SettingError(f"{self.name} must be set: {self.meaning}")
        if not text:
            return self.default
        value = self.kind.parse(text)
        if value is None:
            raise SettingError(f"{self.name} must be {self.kind.says}, not {text!r}")
        return value


# The database ------------------------------------------------------------------------------------
DATABASE_URL = Setting(
    "DATABASE_URL", TEXT, "", "the database as a URL (locally; in the cloud DB_HOST instead)"
)
DB_HOST = Setting("DB_HOST", TEXT, "", "the database's host (RDS; TLS verified against it)")
DB_PORT = Setting("DB_PORT", whole(1), 5432, "the database's port (with DB_HOST)")
DB_NAME = Setting("DB_NAME", TEXT, "postgres", "the database's name (with DB_HOST)")
DB_SECRET_ARN = Setting(
    "DB_SECRET_ARN", TEXT, "", "the master secret: the owner's login (the migrate function)"
)
DB_CA_BUNDLE = Setting(
    "DB_CA_BUNDLE", TEXT, "", "certificate authorities of the database (default: RDS's bundle)"
)
STATEMENT_TIMEOUT_MS = Setting(
    "STATEMENT_TIMEOUT_MS", whole(1), 3000, "the API's statement timeout, in milliseconds"
)
# The API -----------------------------------------------------------------------------------------
CACHE_TTL_SECONDS = Setting(
    "CACHE_TTL_SECONDS",
    SECONDS,
    30.0,
    "how often the API checks whether the published result changed, at most",
)
API_KEY_REQUIRED = Setting(
    "API_KEY_REQUIRED",
    FLAG,
    False,
    "whether the data routes need an API key (read when Chalice packages the app)",
)
# Uploads and runs --------------------------------------------------------------------------------
COUNTRIES = Setting(
    "COUNTRIES",
    TEXT,
    ",".join(rules.DEFAULT_COUNTRIES),
    "the countries runs are for: Peru, a list (Peru,Latvia), or all",
)
DATASET_QUIET_SECONDS = Setting(
    "DATASET_QUIET_SECONDS",
    whole(0),
    60,
    "a dataset folder without a _SUCCESS marker runs once quiet (no new object) this long",
)
RUN_START_DEADLINE_SECONDS = Setting(
    "RUN_START_DEADLINE_SECONDS",
    whole(1),
    60,
    "a run whose job has not begun this long after a start is looked at (started again)",
)
RUN_START_ATTEMPTS = Setting(
    "RUN_START_ATTEMPTS", whole(1), 8, "failed job starts (capacity aside) after which a run fails"
)
MULTIPART_ABANDON_SECONDS = Setting(
    "MULTIPART_ABANDON_SECONDS",
    whole(1),
    86_400,
    "an unfinished multipart upload older than this no longer holds its folder back",
)
RUN_LEASE_SECONDS = Setting(
    "RUN_LEASE_SECONDS",
    whole(1),
    300,
    "how long a running run may go without its job's heartbeat before it is abandoned",
)
MIN_SEGMENT_ROWS = Setting(
    "MIN_SEGMENT_ROWS",
    whole(1),
    rules.MIN_SEGMENT_ROWS,
    "fewest kept rows a segment needs for its own selection (else its country's fallback)",
)
RECONCILE_LIST_PAGES = Setting(
    "RECONCILE_LIST_PAGES", whole(1), 10, "pages of incoming/ (1,000 keys each) listed a tick"
)
RECONCILE_RUNS = Setting(
    "RECONCILE_RUNS", whole(1), 50, "queued runs started and waiting folders looked at a tick"
)
# The resources the functions use -----------------------------------------------------------------
STAGE = Setting("STAGE", TEXT, "local", "the stage: the metrics' Stage dimension")
RAW_BUCKET = Setting(
    "RAW_BUCKET", TEXT, "", "the bucket uploads arrive in (the reconciler lists it)", required=True
)
LAKE_BUCKET = Setting("LAKE_BUCKET", TEXT, "voucher-lake", "the bucket of the curated lake")
CATALOG_DATABASE = Setting(
    "CATALOG_DATABASE", TEXT, "", "the Glue Data Catalog database of the lake's tables (none)"
)
UPLOAD_QUEUE = Setting(
    "UPLOAD_QUEUE",
    TEXT,
    "voucher-uploads",
    "the queue of upload events (read when Chalice packages the app too)",
)
UPLOAD_MAX_CONCURRENCY = Setting(
    "UPLOAD_MAX_CONCURRENCY", whole(2), 2, "uploads handled at once, at most (read at packaging)"
)
GLUE_JOB_NAME = Setting(
    "GLUE_JOB_NAME",
    TEXT,
    "voucher-selection",
    "the Glue job that runs start (the job-state rule's, read when Chalice packages the app)",
)
JOB_LAUNCHER = Setting(
    "JOB_LAUNCHER",
    choice("glue", "local"),
    "glue",
    "what starts a run's job: Glue, or a local process (the local stack)",
)
JOB_LOG_DIR = Setting("JOB_LOG_DIR", TEXT, ".state/runs", "where local job processes log")
LOCAL_MAX_CONCURRENT_RUNS = Setting(
    "LOCAL_MAX_CONCURRENT_RUNS", whole(0), 0, "local job processes at once, at most (0: no limit)"
)
# A local job's Spark session (on Glue, Glue configures it) ------------------------------------
SPARK_MASTER = Setting("SPARK_MASTER", TEXT, "local[*]", "the Spark master of a local job")
SPARK_DRIVER_MEMORY = Setting("SPARK_DRIVER_MEMORY", TEXT, "2g", "a local job's driver memory")
SPARK_SHUFFLE_PARTITIONS = Setting(
    "SPARK_SHUFFLE_PARTITIONS", whole(1), 8, "a local job's spark.sql.shuffle.partitions"
)
SPARK_SPLIT_BYTES = Setting(
    "SPARK_SPLIT_BYTES", TEXT, "32m", "a local job's spark.sql.files.maxPartitionBytes"
)
SPARK_CLASS_ARCHIVE = Setting(
    "SPARK_CLASS_ARCHIVE", TEXT, "", "a JVM class-data archive a local job starts sooner with"
)
LOG_LEVEL = Setting("LOG_LEVEL", TEXT, "INFO", "the log level (Lambda's AWS_LAMBDA_LOG_LEVEL wins)")

#: Every variable of the runtime, in the order of the table above.
VARIABLES: tuple[Setting[object], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Setting)
)


def table() -> str:
    """:data:`VARIABLES` as a Markdown table (docs/deploy.md holds it)."""
    rows = [
        "| Variable | Kind | Default | Meaning |",
        "|---|---|---|---|",
        *(f"| `{s.name}` | {s.kind.says} | {_shown(s)} | {s.meaning} |" for s in VARIABLES),
    ]
    return "\n".join(rows)


def _shown(setting: Setting[object]) -> str:
    default = setting.default
    if setting.required:
        return "(required)"
    if default == "":
        return "(none)"
    if isinstance(default, bool):
        return str(default).lower()
    return f"`{default}`"


if __name__ == "__main__":
    print(table())
