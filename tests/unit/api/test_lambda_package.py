"""The Lambda package stays lean: the handlers import no data stack and touch nothing at import."""

from __future__ import annotations

import ast
import subprocess
import sys

from infra.deploy.package import LAMBDA_FORBIDDEN
from infra.local.paths import REPO_ROOT

HEAVY = tuple(sorted(LAMBDA_FORBIDDEN))


def test_importing_the_app_loads_no_data_stack_and_no_aws_client():
    probe = (
        "import sys, app\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY + ('boto3',)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"


def test_no_lambda_module_imports_the_data_stack():
    """Also the modules the app does not import today (chalicelib is shared with the job)."""
    offenders = []
    for path in [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "chalicelib").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n.split(".")[0] in HEAVY
            ]
    assert offenders == []


def test_requirements_txt_holds_only_what_the_handlers_import():
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    pins = [line.split("==")[0] for line in lines if line.strip() and not line.startswith("#")]
    assert pins == ["psycopg2-binary"]
