"""The published-result cache: one per Lambda container, answering from memory.

It loads every published country once, then checks at most every ``CACHE_TTL_SECONDS`` whether
``published_country`` changed (a few short rows) and reloads when it did. It holds one connection,
opened lazily, with connect and statement timeouts, and reopened after a failure. When the
database is unreachable it keeps serving what it loaded last and reports itself degraded.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from chalicelib import db, settings
from chalicelib.api.errors import ApiError
from chalicelib.api.published import VERSION_SQL, Published, load_published
from chalicelib.db import Connection

T = TypeVar("T")

log = logging.getLogger(__name__)


class PublishedStore:
    """Serves the last loaded :class:`Published` and refreshes it when it is due."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._connect = connect
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._published: Published | None = None
        self._checked_at: float | None = None
        self.reachable: bool | None = None

    def _due(self) -> bool:
        """Whether to check now: every TTL, and on every request while nothing is loaded."""
        checked = self._checked_at
        return self._published is None or checked is None or self._clock() - checked >= self._ttl

    def published(self) -> Published:
        """What to answer from; a 503 :class:`ApiError` when nothing could ever be loaded."""
        if self._due():
            self.refresh(only_if_due=True)
        if self._published is None:
            raise ApiError(
                503,
                "unavailable",
                "no published result could be loaded from the database yet; try again shortly",
            )
        return self._published

    def health(self) -> tuple[int, dict[str, Any]]:
        """Check the database now; 503 when nothing can be served."""
        self.refresh()
        published = self._published
        countries = list(published.countries.values()) if published else []
        status = "ok" if self.reachable else "degraded"
        if not countries:
            status = "unavailable"
        return (503 if status == "unavailable" else 200), {
            "status": status,
            "database": "reachable" if self.reachable else "unreachable",
            "loaded_at": published.loaded_at if published else None,
            "published": [
                {"country_code": c.name, "run_id": c.run.run_id, "published_at": c.run.published_at}
                for c in countries
            ],
        }

    def read(self, query: Callable[[Connection], T]) -> T:
        """Run ``query(connection)`` on this container's connection; 503 when the database fails
        (any other exception is a bug: it goes up as itself, to be logged as one)."""
        with self._lock:
            try:
                return query(self._connection())
            except db.Error as e:
                self._drop_connection()
                log.error("query failed: %s: %s", type(e).__name__, db.redact(str(e)).strip())
                raise ApiError(
                    503, "unavailable", "the database cannot be reached; try again shortly"
                ) from None

    def refresh(self, only_if_due: bool = False) -> None:
        """Reload when the published runs changed; the database failing is logged and kept,
        never raised (anything else is a bug, raised)."""
        with self._lock:
            if only_if_due and not self._due():
                return  # another thread checked meanwhile
            self._checked_at = self._clock()
            # A kept connection may have died while idle: it gets one retry on a fresh one.
            for _ in range(2 if self._conn is not None else 1):
                try:
                    self._check()
                except db.Error as e:
                    self._drop_connection()
                    error = e
                else:
                    self.reachable = True
                    return
            self._failed(error)

    def _connection(self) -> Connection:
        """The one connection of this container, opened on first use (read-only snapshots)."""
        if self._conn is None:
            self._conn = self._connect()
            self._conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        return self._conn

    def _check(self) -> None:
        if self._published is not None:
            conn = self._connection()
            with conn, conn.cursor() as cur:
                cur.execute(VERSION_SQL)
                if tuple(cur.fetchall()) == self._published.version:
                    return
        self._published = load_published(self._connection(), loaded_at=datetime.now(UTC))
        log.info("loaded published runs %s", self._published.version)

    def _failed(self, error: Exception) -> None:
        self.reachable = False
        state = "serving the last loaded result" if self._published else "nothing loaded yet"
        log.error(
            "published results not refreshed (%s): %s: %s",
            state,
            type(error).__name__,
            db.redact(str(error)).strip(),
        )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except db.Error:  # already broken: nothing more to release
                log.debug("closing a broken connection failed", exc_info=True)
            self._conn = None


@functools.cache
def default_store() -> PublishedStore:
    """This container's store, configured from the environment on first use."""
    return PublishedStore(
        connect=functools.partial(
            db.connect,
            statement_timeout_ms=settings.STATEMENT_TIMEOUT_MS.read(),
            application_name="voucher-api",
            role=db.READER,
        ),
        ttl_seconds=settings.CACHE_TTL_SECONDS.read(),
    )
