"""When the Chalice CLI loads the app: ``chalice deploy`` (or ``delete``) of a cloud stage typed
at the project's root carries on in the project rendered from the stage's deployed stacks, or
stops saying which command to run first (``infra/deploy/chalice_project.py``). Never the
committed policy files' CloudFormation references sent to IAM (``MalformedPolicyDocument``)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping


def follow_the_rendered_stage(
    argv: list[str] | None = None, env: Mapping[str, str] | None = None
) -> None:
    env = os.environ if env is None else env
    argv = sys.argv if argv is None else argv
    if env.get("AWS_CHALICE_CLI_MODE") != "true" or env.get("DB_HOST"):
        return  # not the CLI, or a rendered project (it has the stage's database settings)
    if not env.get("STAGE") or not {"deploy", "delete"} & set(argv[1:]):
        return  # the local stage (no STAGE), or a command that changes nothing in AWS
    # The repository's tooling: there when the CLI runs in a checkout, never in a package.
    chalice_project = importlib.import_module("infra.deploy.chalice_project")
    chalice_project.redirect(env["STAGE"], argv, sys.orig_argv)
