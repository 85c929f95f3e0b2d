"""The job with some of its guarantees switched off: benchmark-only builds, so that what each
promise costs is measured, not guessed.

A switch replaces one of :mod:`glue_jobs.transforms`' functions with the straightforward
expression the floor (:mod:`benchmarks.spark_floor`) uses, in the benchmark's worker process only;
everything else is the job as ``make pipeline`` runs it. Where the input needs the guarantee
(text that Spark's casts read but the rules refuse, Unicode whitespace around a country) the
counts differ: that is the promise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from benchmarks.spark_floor import ASCII_WHITESPACE
from glue_jobs import transforms as t


def _native_number(df: DataFrame, name: str) -> Column:
    return F.col(name).cast("double")


def _native_timestamp(df: DataFrame, name: str) -> Column:
    return F.col(name).cast("timestamp")


def _ascii_key(name: str) -> Column:
    return F.lower(F.btrim(F.col(name), F.lit(ASCII_WHITESPACE)))


#: Guarantee -> (what it promises, the transforms' functions that keep it -> the floor's).
GUARANTEES: dict[str, tuple[str, dict[str, Callable[..., Any]]]] = {
    "strict_text": (
        "numbers only from decimal notation, times only from whole dates, Unicode whitespace"
        " trimmed first (off: Spark's native casts)",
        {"_number": _native_number, "_timestamp": _native_timestamp},
    ),
    "unicode_key": (
        "a country's key trims all of Unicode's whitespace (off: ASCII whitespace, the floor's)",
        {"country_key": _ascii_key},
    ),
}


@contextlib.contextmanager
def switched_off(*guarantees: str) -> Iterator[None]:
    """The job's transforms without ``guarantees`` (keys of ``GUARANTEES``) inside the block."""
    replaced = {name: f for g in guarantees for name, f in GUARANTEES[g][1].items()}
    saved = {name: getattr(t, name) for name in replaced}
    for name, function in replaced.items():
        setattr(t, name, function)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(t, name, function)
