"""PostgreSQL connections from the environment, each as the role its work needs.

Three kinds of session (migration ``0007_least_privilege``): the migrations connect as the owner of
the schema; the API as :data:`READER`; the job and the upload and job-state handlers as
:data:`WRITER`. ``role`` names which; none is the owner.

- Locally (``DATABASE_URL``, the tests): the URL's user connects and takes the role with
  ``SET ROLE`` at connection time, so every local run is held to the role's grants.
- In the cloud (``DB_HOST``, ``DB_PORT``, ``DB_NAME``): a role logs in as itself with an IAM
  authentication token (signed here, no call to AWS; the function's IAM policy allows
  ``rds-db:connect`` as that role alone); the owner with the RDS-managed master secret that
  ``DB_SECRET_ARN`` names (only the ``migrate`` function may read it). Always TLS with
  ``verify-full`` against the RDS certificate authorities (:func:`ca_bundle`).

Secret values never appear in logs or error messages.
"""

from __future__ import annotations

import functools
import json
import pkgutil
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from chalicelib import settings

#: What the database (or the way to it) failing raises: every error of psycopg2's. Anything else
#: is a bug, never to be reported as the database out of reach.
Error = psycopg2.Error
#: A psycopg2 session and its cursor: what the functions that read and write rows take.
Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5
#: The API's role: reads the product's tables, read-only sessions.
READER = "voucher_reader"
#: The job's and the handlers' role: reads and writes the product's rows, no DDL.
WRITER = "voucher_writer"
#: The RDS certificate authorities (AWS's global bundle), fetched into the package by
#: ``make package`` (infra/deploy/package.py): packaged with the code, git-ignored.
CA_BUNDLE = "certs/rds-ca-bundle.pem"


def _secret_params(secret_arn: str) -> dict[str, str]:
    import boto3  # lazily: only the cloud path needs it

    secret: dict[str, str] = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    )
    return {"user": secret["username"], "password": secret["password"]}


@functools.cache
def _rds() -> Any:  # boto3's RDS client (boto3 ships no type information)
    import boto3  # lazily: only the cloud path needs it

    return boto3.client("rds")


def iam_token(host: str, port: int, user: str) -> str:
    """An RDS IAM authentication token for ``user`` (valid 15 minutes; signed locally)."""
    token: str = _rds().generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
    return token


def ca_bundle(env: Mapping[str, str] | None = None) -> str:
    """The file of certificate authorities a server's certificate must chain to:
    ``DB_CA_BUNDLE``, else the RDS bundle packaged beside this module (copied out of a zip
    when the package is imported from one, as Glue's ``--extra-py-files``)."""
    if settings.DB_CA_BUNDLE.read(env):
        return settings.DB_CA_BUNDLE.read(env)
    beside = Path(__file__).with_name("certs") / Path(CA_BUNDLE).name
    if beside.is_file():
        return str(beside)
    return _extracted_ca_bundle()


@functools.cache
def _extracted_ca_bundle() -> str:
    try:
        data = pkgutil.get_data(__name__.rpartition(".")[0] or __name__, CA_BUNDLE)
    except OSError:
        data = None
    if not data:
        raise RuntimeError(
            f"no certificate authority bundle ({CA_BUNDLE} in chalicelib): make package fetches"
            " AWS's RDS bundle into the package; DB_CA_BUNDLE may name another file"
        )
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as out:
        out.write(data)
    return out.name


class LoginError(psycopg2.OperationalError):
    """No login could be had for the database (AWS refused or could not be asked for the secret
    or the credentials a token is signed with): the database cannot be reached, as for any
    connection error."""


def _login(env: Mapping[str, str] | None, host: str, port: int, role: str | None) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError  # lazily: the cloud path's

    try:
        if role:
            return {"user": role, "password": iam_token(host, port, role)}
        if settings.DB_SECRET_ARN.read(env):
            return _secret_params(settings.DB_SECRET_ARN.read(env))
    except (BotoCoreError, ClientError) as exc:
        raise LoginError(f"no login for {role or 'the owner'} at {host}: {exc}") from exc
    raise RuntimeError("the owner's session needs DB_SECRET_ARN (the master secret)")


def _cloud_params(env: Mapping[str, str] | None, role: str | None) -> dict[str, Any]:
    host, port = settings.DB_HOST.read(env), settings.DB_PORT.read(env)
    login = _login(env, host, port, role)
    return {
        "host": host,
        "port": port,
        "dbname": settings.DB_NAME.read(env),
        **login,
        "sslmode": "verify-full",  # TLS, and the server proves it is DB_HOST
        "sslrootcert": ca_bundle(env),
    }


def connection_params(
    env: Mapping[str, str] | None = None, role: str | None = None
) -> dict[str, Any]:
    """psycopg2.connect keyword arguments for the configured database, as ``role`` (``None``:
    the owner); a local ``role`` is taken by the ``options`` of :func:`connect`."""
    if settings.DATABASE_URL.read(env):
        return {"dsn": settings.DATABASE_URL.read(env)}
    if settings.DB_HOST.read(env):
        return _cloud_params(env, role)
    raise RuntimeError("no database configured: set DATABASE_URL, or DB_HOST and DB_PORT")


def connect(
    statement_timeout_ms: int | None = None,
    application_name: str = "voucher-selection",
    role: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Connection:
    """Open a connection as ``role`` (``None``: the owner, for migrations) with a connect
    timeout and, optionally, a statement timeout; the database is ``env``'s (the process's
    environment by default)."""
    params = connection_params(env, role)
    options = []
    if statement_timeout_ms:
        options.append(f"-c statement_timeout={int(statement_timeout_ms)}")
    if role and "dsn" in params:  # local: the URL's user takes the role for the session
        options.append(f"-c role={role}")
    # The keyword arguments are a dict of Any, which psycopg2's overloads cannot tell apart.
    conn: Connection = psycopg2.connect(
        **params,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=application_name,
        options=" ".join(options) or None,
    )
    return conn


def with_connection(
    step: Callable[..., T],
    *args: Any,
    application_name: str = "voucher-selection-job",
    role: str = WRITER,
    env: Mapping[str, str] | None = None,
) -> T:
    """``step(connection, *args)`` on a connection of its own (as the writer by default), closed
    afterwards: a job may run for hours, and the database may restart (or fail over)
    meanwhile without failing it."""
    conn = connect(application_name=application_name, role=role, env=env)
    try:
        return step(conn, *args)
    finally:
        conn.close()


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide passwords that a driver message or a URL might carry."""
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))
