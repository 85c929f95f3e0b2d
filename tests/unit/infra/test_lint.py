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


CHECKOV = Path(sys.executable).with_name("checkov")


def checkov(*files: Path) -> list[dict]:
    """checkov's CloudFormation report of ``files`` (offline), one per file scanned."""
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "-o", "json"]
    for file in files:
        command += ["-f", str(file)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    report = json.loads(done.stdout)
    return report if isinstance(report, list) else [report]


def test_every_template_passes_checkov_each_exception_justified(packaged):
    """The data plane templates and the app stack's, as chalice package writes it for each
    stage (the template a deploy sends): no failed check, and every skip says why."""
    files = [templates.path(part) for part in templates.DATA_PLANE]
    files += [built.template for built in packaged.values()]
    [report] = checkov(*files)
    failed = report["results"]["failed_checks"]
    assert not failed, [(c["check_id"], c["resource"], c["file_path"]) for c in failed]
    skipped = report["results"]["skipped_checks"]
    assert skipped and all(len(c["check_result"]["suppress_comment"]) > 40 for c in skipped)


def test_checkov_finds_what_no_exception_covers(tmp_path):
    """The scanner really reads our templates: a bucket without its justified exception fails."""
    storage = templates.path("storage").read_text()
    bare = tmp_path / "storage.yaml"
    bare.write_text(storage.replace("- id: CKV_AWS_18", "- id: CKV_AWS_0", 1))
    [report] = checkov(bare)
    assert [c["check_id"] for c in report["results"]["failed_checks"]] == ["CKV_AWS_18"]
