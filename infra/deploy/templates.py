"""The CloudFormation templates in ``infra/cloudformation``: where they are, and reading them.

YAML templates use CloudFormation's short tags (``!Ref``, ``!Sub``, ``!GetAtt``...); :func:`load`
turns them into the long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``) that JSON templates use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.local.paths import REPO_ROOT

TEMPLATES_DIR = REPO_ROOT / "infra" / "cloudformation"
#: The data plane's stacks, in deploy order; each template is ``<part>.yaml``.
DATA_PLANE = ("storage", "network", "database", "glue")
#: Merged into the template ``chalice package`` writes: the app stack.
CHALICE_OVERLAY = TEMPLATES_DIR / "chalice-overlay.yaml"
#: CloudFormation's limit for a template sent in the request (TemplateBody), in bytes.
TEMPLATE_BODY_LIMIT = 51_200
_SUB = re.compile(r"\$\{([^}]+)\}")


def path(part: str) -> Path:
    return TEMPLATES_DIR / f"{part}.yaml"


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # yaml is untyped (no types-PyYAML here)
    """A SafeLoader that knows CloudFormation's short tags (SafeLoader itself stays as it is)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _intrinsic)


def loads(text: str) -> dict[str, Any]:
    template: dict[str, Any] = yaml.load(text, Loader=_Loader)
    return template


def load(file: Path) -> dict[str, Any]:
    return loads(file.read_text())


def parameters(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template's parameters: name -> declaration (``Type``, ``Default``...)."""
    return dict(template.get("Parameters") or {})


def required_parameters(template: dict[str, Any]) -> set[str]:
    """The parameters without a default: a deploy must give each of them a value."""
    return {name for name, spec in parameters(template).items() if "Default" not in spec}


class RenderError(ValueError):
    """A template or policy file names a value nothing gives."""


def resolve(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with every ``Ref`` and ``Fn::Sub`` replaced from ``values`` (parameters, stack
    outputs, pseudo parameters such as ``AWS::Region``)."""
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return _lookup(value["Ref"], values)
    if set(value) == {"Fn::Sub"}:
        return _SUB.sub(lambda m: _lookup(m[1], values), value["Fn::Sub"])
    return {k: resolve(v, values) for k, v in value.items()}


def _lookup(name: str, values: Mapping[str, str]) -> str:
    if name not in values:
        raise RenderError(f"nothing gives {name} (given: {', '.join(sorted(values))})")
    return str(values[name])
