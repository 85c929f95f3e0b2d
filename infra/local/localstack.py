"""LocalStack as the local AWS endpoint (``make up AWS=localstack``): installed from PyPI into
the state folder with a Python 3.12 or newer found on this machine, run on the host, on loopback
only.

LocalStack's runtime needs Python 3.12+ (the project runs 3.11), so it gets a virtual environment
of its own. Left to itself on this kind of machine it takes itself for a container and listens
on every interface; ``OVERRIDE_IN_DOCKER=0`` (host mode: its files under the state folder) and the
hypercorn gateway (the default server ignores the listen address) keep it on 127.0.0.1.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from infra.local.errors import StackError
from infra.local.settings import HOST, Settings

REQUIREMENTS = Path(__file__).with_name("localstack-requirements.txt")
INSTALL_TIMEOUT_S = 900
MINIMUM = (3, 12)


def python() -> Path:
    """A Python of at least 3.12: on the PATH, or one pyenv installed."""
    candidates = [shutil.which(f"python3.{minor}") for minor in range(20, MINIMUM[1] - 1, -1)]
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")), reverse=True
    )
    for candidate in filter(None, candidates):
        version = subprocess.run(
            [candidate, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if len(version) == 2 and tuple(map(int, version)) >= MINIMUM:
            return Path(candidate)
    raise StackError(
        "LocalStack needs Python 3.12 or newer and none was found (tried python3.12+ on the PATH"
        " and ~/.pyenv/versions): install one (e.g. pyenv install 3.13), or use moto (make up)"
    )


def venv() -> Path:
    """LocalStack's virtual environment, one per checkout in its state folder, made (or remade
    when the pinned requirements changed) on first use; returns its Python."""
    folder = Settings().state_dir / "localstack" / "venv"
    stamp = folder / ".requirements"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return folder / "bin" / "python"
    shutil.rmtree(folder, ignore_errors=True)
    for step in (
        [str(python()), "-m", "venv", str(folder)],
        [
            str(folder / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
    ):
        done = subprocess.run(
            step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise StackError(
                f"installing LocalStack failed ({' '.join(step[:3])}):\n"
                f"{(done.stderr or done.stdout)[-1500:]}"
            )
    stamp.write_text(wanted)
    return folder / "bin" / "python"


def command(state_dir: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run LocalStack on 127.0.0.1:``port``, its files under
    ``state_dir``."""
    root = Path(state_dir) / f"localstack-{port}"
    env = {
        **os.environ,
        "GATEWAY_LISTEN": f"{HOST}:{port}",
        "GATEWAY_SERVER": "hypercorn",  # the default server listens on every interface
        "OVERRIDE_IN_DOCKER": "0",  # host mode: loopback defaults, files under FILESYSTEM_ROOT
        "FILESYSTEM_ROOT": str(root),
        "DNS_ADDRESS": "0",  # no DNS server (it would listen on port 53)
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",  # no analytics calls home
    }
    return [str(venv()), "-m", "localstack.runtime.main"], env
