"""Start and stop a PostgreSQL server from the machine's binaries, and prepare its databases.

Reusable on its own, e.g. for a throwaway server in a test::

    with postgres.temporary() as server:          # a fresh server on a free port
        url = server.url                          # postgresql://postgres@127.0.0.1:PORT/postgres
        postgres.stop(server.data_dir)            # "the database went away"
        postgres.start(server.data_dir, server.port)  # and back, with its data

Servers listen on 127.0.0.1 only (no Unix socket), trust local connections and are
initialised once per data folder. As root, ``initdb``/``pg_ctl`` run as the ``postgres`` user,
which then owns the data folder.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import errors, sql
from psycopg2.extensions import make_dsn, parse_dsn

from infra.local.errors import StackError
from infra.local.processes import free_port, port_in_use
from infra.local.settings import DATABASE_USER, HOST

MAINTENANCE_DB = "postgres"
_OS_USER = "postgres"


@dataclass(frozen=True)
class Server:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return server_url(self.port)


def server_url(port: int, dbname: str = MAINTENANCE_DB) -> str:
    return f"postgresql://{DATABASE_USER}@{HOST}:{port}/{dbname}"


def bindir() -> Path:
    """Folder of initdb and pg_ctl: ``pg_config --bindir``, /usr/lib/postgresql/*/bin, or PATH."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    raise StackError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: "
        "install the PostgreSQL server (apt-get install postgresql)"
    )


def _run_as_owner(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a server tool, as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    prefix = ["runuser", "-u", _OS_USER, "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def _data_dir(data_dir: str | Path) -> Path:
    """The folder the server really uses for ``data_dir`` (it may be a link, see below)."""
    return Path(data_dir).absolute().resolve()


def _prepare_data_dir(data_dir: str | Path) -> Path:
    """Create ``data_dir`` for the server's OS user and return the real folder to use.

    As root, when the ``postgres`` user cannot traverse the parents of ``data_dir`` (a clone under
    a private folder), the data lives in /var/tmp instead and ``data_dir`` links to it.
    """
    data_dir = Path(data_dir).absolute()
    as_root = os.geteuid() == 0
    if data_dir.is_symlink():
        real = _data_dir(data_dir)
    elif not as_root:
        real = data_dir
    else:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if _run_as_owner(["test", "-x", str(data_dir.parent)]).returncode == 0:
            real = data_dir
        else:
            digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
            real = Path("/var/tmp") / f"voucher-pg-{digest}"
            data_dir.symlink_to(real, target_is_directory=True)
    real.mkdir(parents=True, exist_ok=True)
    if as_root:
        shutil.chown(real, _OS_USER, _OS_USER)
    return real


def give_to_server(path: Path, mode: int = 0o600) -> Path:
    """Make a file the server reads (a TLS key, an hba file) its own, as PostgreSQL requires
    of a private key: readable by the server's OS user alone."""
    path.chmod(mode)
    if os.geteuid() == 0:
        shutil.chown(path, _OS_USER, _OS_USER)
    return path


def remove(data_dir: str | Path) -> None:
    """Delete a stopped server's data folder (and the folder it links to, if relocated)."""
    data_dir = Path(data_dir).absolute()
    shutil.rmtree(_data_dir(data_dir), ignore_errors=True)
    if data_dir.is_symlink():
        data_dir.unlink()


def is_running(data_dir: str | Path) -> bool:
    """Whether a server runs on this data folder (``pg_ctl status``)."""
    data_dir = _data_dir(data_dir)
    if not (data_dir / "postmaster.pid").exists():
        return False
    return _run_as_owner([str(bindir() / "pg_ctl"), "-D", str(data_dir), "status"]).returncode == 0


def answers(url: str) -> bool:
    """Whether a PostgreSQL server accepts a connection to ``url``."""
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


def start(data_dir: str | Path, port: int, settings: Mapping[str, str] | None = None) -> str:
    """Start (initialising it once) the server of ``data_dir`` on 127.0.0.1:``port``, with
    ``settings`` (server parameters such as ``ssl``) beside the defaults.

    Returns the URL of its maintenance database. Raises :class:`StackError` when the binaries are
    missing or the port is taken. A server already running on ``data_dir`` is left as it is.
    """
    tools = bindir()
    if is_running(data_dir):
        return server_url(port)
    if port_in_use(port):
        raise StackError(
            f"port {port} on {HOST} is in use by another process, not the server of {data_dir}"
        )
    data_dir = _prepare_data_dir(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        init = _run_as_owner(
            [
                str(tools / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                DATABASE_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        if init.returncode != 0:
            raise StackError(f"initdb failed for {data_dir}:\n{init.stderr.strip()}")
    options = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories=''"
    options += "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
    log = data_dir / "server.log"
    run = _run_as_owner(
        [str(tools / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", options, "-w", "start"]
    )
    if run.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else run.stderr
        raise StackError(f"PostgreSQL did not start on port {port}:\n{tail.strip()}")
    return server_url(port)


def stop(data_dir: str | Path) -> bool:
    """Stop (fast shutdown) the server of ``data_dir``; return whether one was running."""
    data_dir = _data_dir(data_dir)
    if not is_running(data_dir):
        return False
    run = _run_as_owner([str(bindir() / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"])
    if run.returncode != 0:
        raise StackError(f"pg_ctl stop failed for {data_dir}:\n{run.stderr.strip()}")
    return True


@contextlib.contextmanager
def temporary(
    port: int | None = None, settings: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """A throwaway server in a temporary folder (a free port by default) with ``settings``
    (see :func:`start`), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="voucher-pg-"))
    base.chmod(0o755)
    server = Server(base / "data", port or free_port())
    try:
        start(server.data_dir, server.port, settings)
        yield server
    finally:
        stop(server.data_dir)
        remove(server.data_dir)
        shutil.rmtree(base, ignore_errors=True)


def with_database(url: str, dbname: str) -> str:
    """``url`` (a URL or a ``key=value`` string) pointing at database ``dbname`` instead."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + dbname))
    return make_dsn(url, dbname=dbname)


def database_name(url: str) -> str:
    params = parse_dsn(url)
    return params.get("dbname") or params.get("user") or DATABASE_USER


def ensure_database(url: str) -> bool:
    """Create the database that ``url`` names when it is missing; return whether it was created."""
    dbname = database_name(url)
    try:
        psycopg2.connect(url, connect_timeout=5).close()
        return False
    except psycopg2.OperationalError as exc:
        if f'database "{dbname}" does not exist' not in str(exc):
            raise
    try:
        create_database(with_database(url, MAINTENANCE_DB), dbname)
    except errors.DuplicateDatabase:  # created meanwhile by a concurrent caller
        return False
    return True


def _admin_execute(admin_url: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(admin_url, connect_timeout=5)
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_database(admin_url: str, dbname: str) -> None:
    _admin_execute(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop_database(admin_url: str, dbname: str) -> None:
    """Drop ``dbname``, closing any session still connected to it."""
    _admin_execute(
        admin_url,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)),
    )
