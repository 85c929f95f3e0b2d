"""Apply the versioned SQL migrations in ``chalicelib/migrations`` exactly once each."""

from __future__ import annotations

from pathlib import Path

from chalicelib.db import Connection

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_ID = 0x564F5543  # advisory lock held while migrating, so concurrent callers queue up


def pending(applied: set[str]) -> list[Path]:
    return [p for p in sorted(MIGRATIONS_DIR.glob("*.sql")) if p.stem not in applied]


def migrate(conn: Connection) -> list[str]:
    """Apply every pending migration in one transaction; return the versions applied."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        todo = pending({row[0] for row in cur.fetchall()})
        for path in todo:
            cur.execute(path.read_text())
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
    return [p.stem for p in todo]


def apply() -> list[str]:
    """Migrate the configured database (the ``migrate`` Lambda, run once after each deploy)."""
    from chalicelib import db

    conn = db.connect(application_name="voucher-selection-migrate")
    try:
        return migrate(conn)
    finally:
        conn.close()
