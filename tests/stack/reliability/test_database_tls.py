"""TLS to the database as the cloud connects (``DB_HOST``, not ``DATABASE_URL``): ``verify-full``
against a bundle of certificate authorities, shown on a PostgreSQL server of the test's own with a
certificate from an authority of its own. The server only speaks TLS; the functions' roles log in
with an IAM authentication token as their password (signed with the local endpoint's dummy
credentials; the test server trusts loopback, so the token's value is not checked here), the
owner with the master secret from Secrets Manager."""

from __future__ import annotations

import json
import uuid

import psycopg2
import pytest

from chalicelib import db
from infra.local import s3 as local_s3


@pytest.fixture
def cloud_env(tls_server, local_stack, monkeypatch):
    """The environment a deployed function has, pointed at the TLS server."""
    secrets = local_s3.client(local_stack.endpoint_url, "secretsmanager")
    arn = secrets.create_secret(
        Name=f"voucher-tls-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": "postgres", "password": "unused"}),
    )["ARN"]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    env = {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(tls_server.server.port),
        "DB_NAME": "postgres",
        "DB_SECRET_ARN": arn,
        "DB_CA_BUNDLE": str(tls_server.ca_file),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def session(conn) -> tuple[str, bool]:
    """Who the session is, and whether it runs over TLS."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return cur.fetchone()


@pytest.mark.parametrize("role", [None, db.READER, db.WRITER])
def test_verify_full_connects_to_a_server_whose_certificate_chains_to_the_bundle(cloud_env, role):
    params = db.connection_params(role=role)
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", cloud_env["DB_CA_BUNDLE"])
    conn = db.connect(role=role)
    try:
        assert session(conn) == (role or "postgres", True)
    finally:
        conn.close()


@pytest.mark.parametrize("role", [None, db.READER])
def test_a_server_certificate_from_another_authority_is_refused(
    cloud_env, tls_server, monkeypatch, role
):
    monkeypatch.setenv("DB_CA_BUNDLE", str(tls_server.other_ca_file))
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        db.connect(role=role).close()


def test_a_server_certificate_for_another_name_is_refused(cloud_env, monkeypatch):
    """verify-full also checks the name: the certificate is for 127.0.0.1, not localhost."""
    monkeypatch.setenv("DB_HOST", "localhost")
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        db.connect().close()


def test_no_bundle_is_an_error_never_an_unverified_connection(cloud_env, monkeypatch):
    monkeypatch.delenv("DB_CA_BUNDLE")
    monkeypatch.setattr(db, "CA_BUNDLE", "certs/absent.pem")  # as a package built without it
    db._extracted_ca_bundle.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="make package fetches"):
            db.connect(role=db.READER)
    finally:
        db._extracted_ca_bundle.cache_clear()
