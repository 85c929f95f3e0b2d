"""Run statuses and who asks for runs have one source, ``chalicelib.runs.status``: the OpenAPI
document and the database's check constraint say the same names in the same order."""

from __future__ import annotations

import json
import re

from chalicelib.runs import RequestedBy, RunStatus
from infra.local.settings import REPO_ROOT

OPENAPI = REPO_ROOT / "chalicelib" / "api" / "static" / "openapi.json"


def _run_schema() -> dict:
    return json.loads(OPENAPI.read_text())["components"]["schemas"]["Run"]


def test_the_openapi_document_names_the_run_statuses_of_the_enum_in_order():
    properties = _run_schema()["properties"]
    assert properties["status"]["enum"] == [s.value for s in RunStatus]
    assert properties["requested_by"]["enum"] == [r.value for r in RequestedBy]


def test_the_database_checks_exactly_the_run_statuses_and_requesters_of_the_enums(db):
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'runs'::regclass AND contype = 'c'"
        )
        checks = [row[0] for row in cur.fetchall()]

    def named(column: str) -> list[str]:
        found = [c for c in checks if f"({column} = ANY" in c or f"{column} = ANY" in c]
        assert len(found) == 1, checks
        return re.findall(r"'(\w+)'::text", found[0])

    assert named("status") == [s.value for s in RunStatus]
    assert named("requested_by") == [r.value for r in RequestedBy]
