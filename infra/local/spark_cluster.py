"""A Spark standalone cluster on this machine, from the pyspark wheel: a master and workers, each
its own JVM, on loopback only. Where closures, broadcasts, caches and observations that only work
inside one JVM would break, as on a real cluster (Glue runs a cluster too).

    with standalone(workers=2) as (master, ui):  # spark://127.0.0.1:<port>
        os.environ["SPARK_MASTER"] = master      # session.local() then joins it
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from infra.local.errors import StackError
from infra.local.processes import free_port
from infra.local.settings import HOST

START_TIMEOUT_S = 60


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(spark_class()), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _wait(
    check: Callable[[], object],
    what: str,
    processes: list[subprocess.Popen[bytes]],
    logs: list[Path],
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            tail = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs)
            raise StackError(f"the Spark standalone {what} did not come up:\n{tail}")
        time.sleep(0.3)


def _alive_workers(ui_port: int) -> int:
    """Workers registered with the master, from its JSON status page (on loopback)."""
    return int(master_status(ui_port).get("aliveworkers", 0))


def master_status(ui_port: int) -> dict[str, Any]:
    """The master's status (workers, applications), from its JSON page; empty until it answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{ui_port}/json/", timeout=2) as answer:
            status: dict[str, Any] = json.load(answer)
            return status
    except OSError:
        return {}


@contextlib.contextmanager
def standalone(workers: int = 2, cores: int = 1, memory: str = "1g") -> Iterator[tuple[str, int]]:
    """A master and ``workers`` workers (``cores`` and ``memory`` each), every service bound to
    127.0.0.1; yields the master URL and its status page's port once every worker has
    registered. Stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="spark-cluster-"))
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOCAL_HOSTNAME": HOST,
        "SPARK_WORKER_DIR": str(folder / "work"),
        "SPARK_LOG_DIR": str(folder),
    }
    env.pop("SPARK_MASTER", None)
    port, ui = free_port(), free_port()
    master_url = f"spark://{HOST}:{port}"
    processes, logs = [], [folder / "master.log"]
    try:
        processes.append(
            _start(
                [
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--webui-port",
                    str(ui),
                ],
                logs[0],
                env,
            )
        )
        _wait(lambda: master_status(ui), "master", processes, logs)
        for n in range(workers):
            logs.append(folder / f"worker-{n}.log")
            processes.append(
                _start(
                    [
                        "org.apache.spark.deploy.worker.Worker",
                        master_url,
                        "--host",
                        HOST,
                        "--cores",
                        str(cores),
                        "--memory",
                        memory,
                        "--webui-port",
                        str(free_port()),
                    ],
                    logs[-1],
                    env,
                )
            )
        _wait(lambda: _alive_workers(ui) >= workers, "workers", processes, logs)
        yield master_url, ui
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)
