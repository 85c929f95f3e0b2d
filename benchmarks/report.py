"""What every benchmark shares: a throwaway database, the machine it ran on, and its own
section of docs/benchmarks.md (each benchmark owns one ``## ...`` section and rewrites only it)."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

from chalicelib.db import Connection
from infra.local import stack
from infra.local.schema import migrated_database
from infra.local.settings import from_env


@contextlib.contextmanager
def throwaway_database(seed: Callable[[Connection], None] | None = None) -> Iterator[str]:
    """A fresh migrated database on the local stack's server (``seed(conn)`` fills it), dropped
    at the end; yields its URL."""
    with migrated_database(stack.admin_url(from_env()), "voucher_bench", seed) as url:
        yield url


def machine() -> dict:
    """Cores, CPU model, memory, Python and system of this machine."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section under ``heading`` in ``path`` (or append it); other sections stay."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + tail if tail else ""))
