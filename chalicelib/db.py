"""PostgreSQL connections from the environment.

``DATABASE_URL`` (local stack, tests) or, in the cloud, ``DB_SECRET_ARN`` naming a Secrets Manager
secret with ``username`` and ``password`` (an RDS-managed master secret) plus ``DB_HOST``,
``DB_PORT`` and ``DB_NAME``. Secret values never appear in logs or error messages.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import psycopg2

CONNECT_TIMEOUT_S = 5


def _secret_params(secret_arn: str) -> dict:
    import boto3  # lazily: only the cloud path needs it

    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    )
    return {
        "host": os.environ.get("DB_HOST") or secret.get("host"),
        "port": int(os.environ.get("DB_PORT") or secret.get("port") or 5432),
        "dbname": os.environ.get("DB_NAME") or secret.get("dbname") or "postgres",
        "user": secret["username"],
        "password": secret["password"],
    }


def connection_params(env: Mapping[str, str] | None = None) -> dict:
    """psycopg2.connect keyword arguments for the configured database."""
    env = os.environ if env is None else env
    if env.get("DATABASE_URL"):
        return {"dsn": env["DATABASE_URL"]}
    if env.get("DB_SECRET_ARN"):
        return _secret_params(env["DB_SECRET_ARN"])
    raise RuntimeError("no database configured: set DATABASE_URL, or DB_SECRET_ARN with DB_HOST")


def connect(statement_timeout_ms: int | None = None, application_name: str = "voucher-selection"):
    """Open a connection with a connect timeout and, optionally, a statement timeout."""
    options = f"-c statement_timeout={int(statement_timeout_ms)}" if statement_timeout_ms else None
    return psycopg2.connect(
        **connection_params(),
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=application_name,
        options=options,
    )


def with_connection(step, *args, application_name: str = "voucher-selection-job"):
    """``step(connection, *args)`` on a connection of its own, closed afterwards: a job may run
    for hours, and the database may restart (or fail over) meanwhile without failing it."""
    conn = connect(application_name=application_name)
    try:
        return step(conn, *args)
    finally:
        conn.close()


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide passwords that a driver message or a URL might carry."""
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))
