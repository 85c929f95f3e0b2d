"""Operational metrics as CloudWatch embedded metric format (EMF): one JSON log line each.

In Lambda, CloudWatch Logs turns such a line into a datapoint of namespace ``VoucherSelection``
with the dimension ``Stage`` (the stage's ``STAGE`` variable); anywhere else it is just a log
line. The stacks' alarms watch ``FailedRuns`` (infra/cloudformation/chalice-overlay.yaml).
"""

from __future__ import annotations

import json
import os
import sys
import time

NAMESPACE = "VoucherSelection"
FAILED_RUNS = "FailedRuns"


def emit(name: str, value: float = 1, **properties: str) -> None:
    """Print one datapoint of ``name`` (a count), with ``properties`` as searchable fields."""
    stage = os.environ.get("STAGE", "local")
    line = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Stage"]],
                    "Metrics": [{"Name": name, "Unit": "Count"}],
                }
            ],
        },
        "Stage": stage,
        name: value,
        **properties,
    }
    print(json.dumps(line, separators=(",", ":")), file=sys.stdout, flush=True)


def run_failed(run_id: str, cause: str) -> None:
    emit(FAILED_RUNS, run_id=run_id, cause=cause)
