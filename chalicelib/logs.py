"""Logs people can search: one JSON object per line, at INFO, with the request id of the Lambda
invocation and the run id of the run a line concerns.

Every function (``app.py`` configures it when Lambda loads the app) and the Glue job write through
the root logger. In Lambda the stage's ``LoggingConfig`` (JSON, application level INFO: the
template) sets ``AWS_LAMBDA_LOG_LEVEL``; without it (a ``chalice deploy``, which has no logging
configuration) the level is INFO all the same: the runtime's default, WARNING, would drop what
says what happened to an upload. The fields are Lambda's own JSON names (``timestamp``,
``level``, ``message``, ``logger``, ``requestId``) plus ``run_id``; a query such as
``filter run_id = "…"`` finds a run's lines in every log group (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from chalicelib import settings

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request", default=None)
_RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("run", default=None)
#: Libraries whose INFO lines are their own housekeeping ("Found credentials in environment
#: variables", py4j's "Closing down clientserver connection"): warnings and errors only.
_CHATTY = ("botocore", "py4j", "urllib3")
#: Set by Lambda in every function's environment: the root handler is the runtime's.
_IN_LAMBDA = "AWS_LAMBDA_FUNCTION_NAME"


class JsonLines(logging.Formatter):
    """A record as one JSON object, with the invocation's and the run's ids."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        request_id = getattr(record, "aws_request_id", None) or _REQUEST_ID.get()
        run_id = getattr(record, "run_id", None) or _RUN_ID.get()
        if request_id:
            line["requestId"] = request_id
        if run_id:
            line["run_id"] = run_id
        if record.exc_info:
            line["errorMessage"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure() -> None:
    """INFO and JSON lines on the root logger: on the runtime's handler in Lambda (it writes to
    the log stream), or on one of stdout where there is none (the Glue job, a job run by hand).
    Elsewhere (a developer's console, a test's captured logging) handlers are left as they are."""
    root = logging.getLogger()
    root.setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL") or settings.LOG_LEVEL.read())
    for library in _CHATTY:
        logging.getLogger(library).setLevel(logging.WARNING)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stdout))
    elif not os.environ.get(_IN_LAMBDA):
        return
    for handler in root.handlers:
        handler.setFormatter(JsonLines())


def through_root(logger: logging.Logger) -> None:
    """Send ``logger`` (Chalice's own, which prints text to stdout) through the root's JSON
    lines instead."""
    logger.handlers.clear()
    logger.propagate = True


@contextlib.contextmanager
def invocation(context: object) -> Iterator[None]:
    """Lines logged in the block carry the Lambda ``context``'s request id."""
    token = _REQUEST_ID.set(getattr(context, "aws_request_id", None))
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


@contextlib.contextmanager
def about_run(run_id: str) -> Iterator[None]:
    """Lines logged in the block carry ``run_id``."""
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


def run(run_id: str) -> dict[str, str]:
    """``extra=`` for one line about ``run_id`` (where a block concerns several runs)."""
    return {"run_id": run_id}
