"""``schema.sql``: the database schema as the migrations leave it, for reading in one place.

It is ``pg_dump --schema-only`` of a freshly migrated database, without what changes from one
dump to the next (pg_dump's comments and session settings, its random ``\\restrict`` key).
``make schema`` writes it; ``tests/stack/pipeline/test_schema.py`` checks that the migrations
reproduce it exactly, so a migration and this file change together.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator

import psycopg2

from chalicelib.db import Connection
from chalicelib.migrate import migrate
from infra.local import postgres
from infra.local.settings import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "schema.sql"
HEADER = (
    "-- The database schema as the migrations in chalicelib/migrations leave it (make schema"
    " writes it;\n-- tests/stack/pipeline/test_schema.py checks it). Read it; change the schema"
    " with a migration.\n"
)
#: Lines of a dump that say nothing about the schema, or differ between two dumps of one schema.
_NOISE = ("--", "SET ", "SELECT pg_catalog.set_config(", "\\restrict", "\\unrestrict")


def dump(url: str) -> str:
    """The normalised schema of the database at ``url``."""
    pg_dump = postgres.bindir() / "pg_dump"
    text = subprocess.run(
        [str(pg_dump), "--schema-only", "--no-owner", "--dbname", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [line.rstrip() for line in text.splitlines() if not line.startswith(_NOISE)]
    blocks = "\n".join(lines).split("\n\n")
    return HEADER + "\n" + "\n\n".join(b.strip("\n") for b in blocks if b.strip()) + "\n"


@contextlib.contextmanager
def migrated_database(
    admin_url: str, prefix: str, seed: Callable[[Connection], None] | None = None
) -> Iterator[str]:
    """A new database ``<prefix>_<hex>`` with every migration applied (``seed(conn)`` fills it),
    dropped at the end; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    postgres.create_database(admin_url, name)
    url = postgres.with_database(admin_url, name)
    try:
        conn = psycopg2.connect(url)
        try:
            migrate(conn)
            if seed:
                seed(conn)
        finally:
            conn.close()
        yield url
    finally:
        postgres.drop_database(admin_url, name)


def migrated_schema(admin_url: str) -> str:
    """The schema of a new database after every migration."""
    with migrated_database(admin_url, "voucher_schema") as url:
        return dump(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    from infra.local import stack

    SCHEMA_FILE.write_text(migrated_schema(stack.up(echo=lambda *_: None).admin_database_url))
    print(f"wrote {SCHEMA_FILE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
