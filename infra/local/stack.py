"""The local stack: a moto server (AWS endpoint) and PostgreSQL, provisioned for the product.

Run ``python -m infra.local.stack up|down|status|env|clean`` from the repository root, or call
:func:`up` / :func:`down` with a :class:`~infra.local.settings.Settings`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from chalicelib.db import redact
from chalicelib.migrate import migrate
from infra.local import aws, catalog, events, postgres, s3, spark_classes
from infra.local.errors import StackError
from infra.local.settings import HOST, Settings, from_env

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Running:
    """What ``up`` provided, and what it did to each service (``services[name]``)."""

    settings: Settings
    services: dict[str, str]

    @property
    def endpoint_url(self) -> str:
        return self.settings.endpoint_url

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def admin_database_url(self) -> str:
        return admin_url(self.settings)


def admin_url(settings: Settings) -> str:
    """The database server's maintenance database, for creating and dropping databases."""
    return postgres.with_database(settings.database_url, postgres.MAINTENANCE_DB)


def _say(echo: Echo, service: str, state: str, detail: str = "") -> None:
    echo(f"{service:<10} {state:<16} {detail}".rstrip())


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise up/down of one state folder between concurrent callers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _postgres_up(settings: Settings) -> str:
    if settings.database_url_override:
        return "external"
    if postgres.is_running(settings.pg_data_dir):
        return "already running"
    if postgres.answers(postgres.server_url(settings.pg_port)):
        return "reused"
    postgres.start(settings.pg_data_dir, settings.pg_port)
    return "started"


def provision(settings: Settings, echo: Echo = print, no_catalog: str | None = None) -> None:
    """Create the buckets, the upload queue and the database if missing; apply migrations.
    ``no_catalog`` says why the settings have no catalog database, when the endpoint has none."""
    client = s3.client(settings.endpoint_url)
    for bucket in (settings.raw_bucket, settings.lake_bucket):
        _say(echo, "bucket", "created" if s3.ensure_bucket(client, bucket) else "exists", bucket)
    events.ensure_upload_queue(settings)
    _say(echo, "queue", "ready", f"{settings.upload_queue} (+ dead-letter queue, notification)")
    if settings.catalog_database:
        _say(
            echo,
            "catalog",
            catalog.ensure(settings),
            f"{settings.catalog_database}: curated, rejected (lake tables)",
        )
    else:
        _say(
            echo,
            "catalog",
            "none",
            no_catalog
            or "CATALOG_DATABASE is empty (the default with"
            " AWS=localstack: its free edition has no Glue); runs register no partitions",
        )
    url = settings.database_url
    try:
        created = postgres.ensure_database(url)
        conn = psycopg2.connect(url, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = redact(str(exc)).strip()
        raise StackError(f"cannot reach the database {redact(url)}: {reason}") from None
    try:
        applied = migrate(conn)
    finally:
        conn.close()
    name = postgres.database_name(url)
    _say(echo, "database", "created" if created else "exists", name)
    _say(echo, "schema", "migrated" if applied else "up to date", ", ".join(applied))


def up(settings: Settings | None = None, echo: Echo = print) -> Running:
    """Start what is not running, reuse what is, provision; idempotent."""
    settings = settings or from_env()
    with _locked(settings.state_dir):
        endpoint = aws.start(settings)
        what = settings.aws_emulator if endpoint != "reused" else "an endpoint already there"
        _say(echo, "aws", endpoint, f"{settings.endpoint_url} ({what})")
        settings, no_catalog = catalog.usable(settings)  # judged by what the endpoint can do
        pg = _postgres_up(settings)
        _say(echo, "postgres", pg, redact(settings.database_url))
        provision(settings, echo, no_catalog)
        _say(
            echo,
            "spark",
            spark_classes.ensure(settings.state_dir),
            "JVM class archive (faster starts)",
        )
    return Running(settings, {"aws": endpoint, "postgres": pg})


def down(settings: Settings | None = None, echo: Echo = print) -> dict[str, str]:
    """Stop the services this state folder started, by PID; data stays."""
    settings = settings or from_env()
    with _locked(settings.state_dir):
        pump = "stopped" if events.stop(settings) else "not running"
        endpoint = "stopped" if aws.stop(settings.state_dir) else "not ours"
        pg = "stopped" if postgres.stop(settings.pg_data_dir) else "not ours"
    _say(echo, "pump", pump)
    _say(echo, "aws", endpoint)
    _say(echo, "postgres", pg)
    return {"pump": pump, "aws": endpoint, "postgres": pg}


def clean(settings: Settings | None = None, echo: Echo = print) -> None:
    """``down``, then remove the state folder with its data."""
    settings = settings or from_env()
    down(settings, echo)
    postgres.remove(settings.pg_data_dir)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    _say(echo, "state", "removed", str(settings.state_dir))


def status(settings: Settings | None = None, echo: Echo = print) -> bool:
    """Print whether each service answers; return whether all do."""
    settings = settings or from_env()
    aws_up = bool(aws.probe(settings.endpoint_url))
    aws_owner = "ours" if aws.owned_pid(settings.state_dir, settings.aws_port) else "not ours"
    pg_up = postgres.answers(admin_url(settings))
    pg_owner = "ours" if postgres.is_running(settings.pg_data_dir) else "not ours"
    _say(echo, "aws", f"up ({aws_owner})" if aws_up else "down", settings.endpoint_url)
    _say(echo, "postgres", f"up ({pg_owner})" if pg_up else "down", redact(settings.database_url))
    return aws_up and pg_up


def exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.stack",
        description=f"The local stack: a moto server at {defaults.endpoint_url} as the AWS "
        f"endpoint and PostgreSQL on {HOST}:{defaults.pg_port} (or the server DATABASE_URL "
        f"names), state in {defaults.state_dir.name}/.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="start or reuse the services, create buckets, migrate the DB")
    commands.add_parser("down", help="stop the services this checkout started; data stays")
    commands.add_parser("status", help="say whether each service answers (exit 3 if not)")
    commands.add_parser("env", help='print export lines for the local endpoints: eval "$(... env)"')
    commands.add_parser("clean", help="down, then delete .state/ and its data")
    args = parser.parse_args(argv)
    settings = from_env()
    try:
        if args.command == "up":
            up(settings)
            print(exports({name: redact(value) for name, value in settings.env().items()}))
            print(f'# in a shell: eval "$({sys.executable} -m infra.local.stack env)"')
        elif args.command == "down":
            down(settings)
        elif args.command == "clean":
            clean(settings)
        elif args.command == "status":
            return 0 if status(settings) else 3
        else:
            print(exports(catalog.usable(settings)[0].env()))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
