"""What a run names and what it computes: its source, statistics, selections and usage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chalicelib.rules import MIN_SEGMENT_ROWS

#: Tables holding a run's results, keyed by run_id (names are constants, never input).
RESULT_TABLES = (
    "run_country_stats",
    "segment_rules",
    "voucher_selection",
    "country_fallback",
    "voucher_usage",
    "selection_changes",
)

#: How many amounts the usage behind a choice names, most used first; the rest are summed as one
#: "other" bucket. Ten bars and the bucket stay legible in a chart at a phone's width, bound what a
#: run publishes per segment (and what the job brings to its driver) whatever the input holds, and
#: always include the winner and the runner-up (the real history uses 3 to 5 amounts a country).
USAGE_TOP_AMOUNTS = 10


def new_run_id() -> str:
    """A run id that sorts by start time: ``20260101T120000Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Source:
    """Where a run's input came from; ``bucket`` is ``None`` for a local path."""

    bucket: str | None
    key: str
    etag: str | None = None
    modified_at: datetime | None = None
    objects: int | None = None  # 1 for a file; the data objects of a dataset folder


@dataclass(frozen=True)
class CountryStats:
    country_key: str
    country: str
    rows_in: int
    rows_kept: int
    rejected_by_reason: dict[str, int]
    unsegmented: dict[str, int]

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


@dataclass(frozen=True)
class Selection:
    """A segment's most used amount and its runner-up (``None``: one amount only)."""

    country_key: str
    segment_name: str
    segment: str
    voucher_amount: float
    voucher_rows: int
    segment_rows: int
    runner_up_amount: float | None = None
    runner_up_rows: int = 0


@dataclass(frozen=True)
class Fallback:
    """A country's most used amount over all its kept rows, and its runner-up."""

    country_key: str
    voucher_amount: float
    voucher_rows: int
    country_rows: int
    runner_up_amount: float | None = None
    runner_up_rows: int = 0


#: A choice: (country_key, segment_name, segment), the fallback's with ``None, None``.
Choice = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class AmountUsage:
    """The kept rows of one voucher amount behind a choice, at its ``position`` (1: the chosen
    amount). ``segment_name`` and ``segment`` are ``None`` for the country's fallback. Past the
    top ``USAGE_TOP_AMOUNTS`` positions, one "other" bucket (``voucher_amount`` ``None``) sums
    the rows of the ``amounts`` it holds."""

    country_key: str
    segment_name: str | None
    segment: str | None
    position: int
    voucher_amount: float | None
    voucher_rows: int
    amounts: int = 1


@dataclass(frozen=True)
class SelectionChange:
    """A selection that differs from the one of the run it replaced (``replaced_run_id``, ``None``
    for a country's first result); ``segment_name``/``segment`` are ``None`` for the fallback, an
    amount is ``None`` where there was no selection."""

    country_key: str
    segment_name: str | None
    segment: str | None
    old_amount: float | None
    new_amount: float | None
    old_share: float | None
    new_share: float | None
    replaced_run_id: str | None


@dataclass
class RunResult:
    rows_read: int
    rows_out_of_scope: int
    countries: list[CountryStats] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)
    min_segment_rows: int = MIN_SEGMENT_ROWS
    #: The usage behind every selection and fallback (none for results made without it).
    usage: list[AmountUsage] = field(default_factory=list)

    @property
    def publishable_keys(self) -> list[str]:
        """Countries this run can publish: those with at least one kept row."""
        return [f.country_key for f in self.fallbacks]
