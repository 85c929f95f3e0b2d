"""Reports built once per session: from a small generated file, and from the real file."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from explore.__main__ import main
from explore.inputs import REAL_FILE
from scripts.generate_data import write


@dataclass(frozen=True)
class Built:
    """A report written by the CLI: its input, files, numbers and what it printed."""

    source: str
    html: Path
    summary: Path
    profile: dict
    printed: str


def build(source: Path, out: Path) -> Built:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--data", str(source), "--out", str(out)]) == 0
    name = source.name.removesuffix(".gzip").removesuffix(".parquet")
    summary = out / f"eda_{name}.json"
    return Built(
        str(source),
        out / f"eda_{name}.html",
        summary,
        json.loads(summary.read_text()),
        printed.getvalue(),
    )


@pytest.fixture(scope="session")
def sample_file(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("explore") / "sample.parquet", rows=4_000, seed=11)


@pytest.fixture(scope="session")
def sample_report(spark, sample_file, tmp_path_factory) -> Built:
    return build(sample_file, tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="session")
def real_report(spark, tmp_path_factory) -> Built:
    if not REAL_FILE.exists():
        pytest.skip(f"the real history file is absent: {REAL_FILE}")
    return build(REAL_FILE, tmp_path_factory.mktemp("real_reports"))


@pytest.fixture(params=["sample", pytest.param("real", marks=pytest.mark.real_data)])
def report(request) -> Built:
    """Each built report in turn (the real one only when its file is present)."""
    return request.getfixturevalue(f"{request.param}_report")
