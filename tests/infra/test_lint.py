"""cfn-lint, the CloudFormation linter, on every template: the data plane stacks as written, and
the app stack as ``chalice package`` writes it (SAM) and as the SAM transform turns it into the
plain CloudFormation that AWS creates (the transform is AWS's own library)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.deploy import templates

CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def lint(*files: Path) -> None:
    done = subprocess.run(
        [str(CFN_LINT), *map(str, files)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"cfn-lint found problems:\n{done.stdout}{done.stderr}"


def test_data_plane_templates_pass_cfn_lint():
    lint(*(templates.path(part) for part in templates.DATA_PLANE))


def test_app_templates_pass_cfn_lint_before_and_after_the_sam_transform(packaged, tmp_path):
    files = []
    for built in packaged.values():
        transformed = tmp_path / f"{built.stage}-transformed.json"
        transformed.write_text(json.dumps(built.transformed))
        files += [built.template, transformed]
    lint(*files)


def test_cfn_lint_catches_a_broken_reference(tmp_path):
    """The linter really reads our templates: a Ref to nothing fails it."""
    broken = tmp_path / "broken.yaml"
    text = templates.path("network").read_text()
    broken.write_text(
        text.replace(
            "SourceSecurityGroupId: !Ref LambdaSecurityGroup",
            "SourceSecurityGroupId: !Ref LambdaSecurityGroupp",
            1,
        )
    )
    done = subprocess.run([str(CFN_LINT), str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "LambdaSecurityGroupp" in done.stdout
