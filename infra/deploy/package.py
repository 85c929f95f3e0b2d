"""Build what a deploy uploads, into ``dist/`` (``make package [STAGE=dev]``).

- ``dist/<stage>/app/``: ``chalice package --stage <stage>`` with the overlay
  ``infra/cloudformation/chalice-overlay.yaml`` merged in and every function's log group,
  logging, errors alarm and dashboard widgets added (``infra/deploy/app_stack.py``): ``sam.yaml``
  (the app stack's template) and ``deployment.zip`` (every Lambda function's code and
  ``requirements.txt``).
- ``dist/glue/``: the job's entry script and ``voucher_libs.zip`` (the ``glue_jobs`` and
  ``chalicelib`` packages, for ``--extra-py-files``); with ``--wheel``, also the psycopg2-binary
  wheel Glue installs when the private subnets have no NAT.

Offline but for PyPI (Chalice fetches Lambda wheels); no AWS credentials needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.deploy import app_stack
from infra.deploy.templates import CHALICE_OVERLAY
from infra.local.paths import REPO_ROOT

DIST = REPO_ROOT / "dist"
GLUE_SCRIPT = REPO_ROOT / "glue_jobs" / "voucher_selection_job.py"
GLUE_PACKAGES = ("glue_jobs", "chalicelib")
#: Never in a Lambda package: the job's libraries (hundreds of MB, and not what the API runs).
LAMBDA_FORBIDDEN = frozenset({"pandas", "pyarrow", "pyspark", "awswrangler", "numpy"})
LAMBDA_UNZIPPED_LIMIT = 250 * 2**20  # AWS Lambda's limit for code unzipped
#: Glue 5.0 runs Python 3.11 on x86_64 Linux.
GLUE_WHEEL_PLATFORM = ("manylinux2014_x86_64", "3.11")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries' time: the same sources give the same bytes


#: AWS's bundle of the RDS certificate authorities (every region), which ``verify-full``
#: checks the database's certificate against (chalicelib/db.py): fetched once, packaged with
#: the code (the Lambda zip, the Glue libraries), git-ignored.
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


class PackageError(RuntimeError):
    pass


def ensure_ca_bundle(root: Path = REPO_ROOT) -> Path:
    """``chalicelib/<db.CA_BUNDLE>``, downloaded from AWS when missing; every certificate in it
    must parse."""
    import ssl
    import urllib.request

    from chalicelib import db

    path = root / "chalicelib" / db.CA_BUNDLE
    if not path.is_file():
        try:
            with urllib.request.urlopen(RDS_CA_BUNDLE_URL, timeout=30) as answer:
                data = answer.read().decode("ascii")
        except OSError as exc:
            raise PackageError(
                f"the RDS certificate bundle could not be fetched from {RDS_CA_BUNDLE_URL}: {exc}"
            ) from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
    blocks = path.read_text().split("-----END CERTIFICATE-----")[:-1]
    try:
        for block in blocks:
            ssl.PEM_cert_to_DER_cert(block.strip() + "\n-----END CERTIFICATE-----\n")
    except ValueError as exc:
        raise PackageError(f"{path} is not a bundle of PEM certificates: {exc}") from exc
    if not blocks:
        raise PackageError(f"{path} holds no certificate")
    return path


@dataclass(frozen=True)
class Build:
    stage: str
    template: Path  # the app stack's SAM template, from chalice package
    lambda_zip: Path
    glue_script: Path
    glue_libs: Path
    glue_wheel: Path | None

    def files(self) -> list[Path]:
        found = [self.template, self.lambda_zip, self.glue_script, self.glue_libs]
        return found + ([self.glue_wheel] if self.glue_wheel else [])


def _region_env() -> dict[str, str]:
    """chalice package needs a region to run; the template it writes does not depend on it."""
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    return {**os.environ, "AWS_DEFAULT_REGION": region}


def chalice_package(stage: str, out_dir: Path, project_dir: Path = REPO_ROOT) -> Path:
    """Run ``chalice package`` with the overlay; return the template's path."""
    chalice = Path(sys.executable).with_name("chalice")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    command = [str(chalice), "package", "--stage", stage]
    command += ["--merge-template", str(CHALICE_OVERLAY), str(out_dir)]
    done = subprocess.run(
        command, cwd=project_dir, env=_region_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise PackageError(f"chalice package --stage {stage} failed:\n{done.stdout}{done.stderr}")
    template = out_dir / "sam.yaml"
    completed = app_stack.complete(yaml.safe_load(template.read_text()))
    template.write_text(yaml.safe_dump(completed, sort_keys=False))
    return template


def top_level_names(zip_path: Path) -> set[str]:
    """The distributions and modules at the root of a zip (``pandas``, ``psycopg2``, ``app``...)."""
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    return {n.split("/")[0].split("-")[0].split(".")[0].lower() for n in names}


def check_lambda_zip(zip_path: Path) -> None:
    forbidden = top_level_names(zip_path) & LAMBDA_FORBIDDEN
    if forbidden:
        raise PackageError(
            f"{zip_path} contains {', '.join(sorted(forbidden))}: the Lambda package holds only "
            "requirements.txt's dependencies (the job's libraries belong to Glue)"
        )
    with zipfile.ZipFile(zip_path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    if unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise PackageError(f"{zip_path} unzips to {unzipped} bytes, over Lambda's 250 MiB")


def glue_libs_zip(out: Path, root: Path = REPO_ROOT) -> Path:
    """Zip the job's packages for ``--extra-py-files`` (Python files and the data they read)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in GLUE_PACKAGES:
            for file in sorted((root / package).rglob("*")):
                if file.is_dir() or "__pycache__" in file.parts or file.suffix == ".pyc":
                    continue
                entry = zipfile.ZipInfo(file.relative_to(root).as_posix(), _FIXED_TIME)
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, file.read_bytes())
    return out


def psycopg2_requirement(requirements: Path = REPO_ROOT / "requirements.txt") -> str:
    """The pinned psycopg2-binary line of requirements.txt: Lambda and Glue use the same one."""
    for line in requirements.read_text().splitlines():
        if line.strip().startswith("psycopg2-binary=="):
            return line.strip()
    raise PackageError(f"no psycopg2-binary==<version> pin in {requirements}")


def download_glue_wheel(out_dir: Path) -> Path:
    """The psycopg2-binary wheel for Glue 5.0 (Linux x86_64, CPython 3.11), from PyPI."""
    shutil.rmtree(out_dir, ignore_errors=True)
    platform, python = GLUE_WHEEL_PLATFORM
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--platform", platform, "--python-version", python]
    command += ["--implementation", "cp", "-d", str(out_dir), psycopg2_requirement()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(out_dir.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise PackageError(f"pip download {psycopg2_requirement()} failed:\n{done.stderr}")
    return wheels[0]


def build(stage: str, wheel: bool = False, dist: Path = DIST) -> Build:
    from chalicelib import db

    bundle = ensure_ca_bundle()  # in chalicelib/: in both packages
    app_dir = dist / stage / "app"
    template = chalice_package(stage, app_dir)
    lambda_zip = app_dir / "deployment.zip"
    check_lambda_zip(lambda_zip)
    with zipfile.ZipFile(lambda_zip) as archive:
        if f"chalicelib/{db.CA_BUNDLE}" not in archive.namelist():
            raise PackageError(f"{lambda_zip} lacks {bundle.relative_to(REPO_ROOT)}")
    glue_dir = dist / "glue"
    glue_dir.mkdir(parents=True, exist_ok=True)
    script = Path(shutil.copy2(GLUE_SCRIPT, glue_dir / GLUE_SCRIPT.name))
    libs = glue_libs_zip(glue_dir / "voucher_libs.zip")
    glue_wheel = download_glue_wheel(glue_dir / "wheels") if wheel else None
    return Build(stage, template, lambda_zip, script, libs, glue_wheel)


def _size(n: int) -> str:
    return f"{n / 2**20:7.2f} MiB" if n >= 2**20 else f"{n / 2**10:7.1f} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy.package", description=__doc__)
    parser.add_argument("--stage", default="dev", choices=["dev", "prod"])
    parser.add_argument("--wheel", action="store_true", help="also fetch Glue's psycopg2 wheel")
    args = parser.parse_args(argv)
    try:
        built = build(args.stage, wheel=args.wheel)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for file in built.files():
        print(f"{_size(file.stat().st_size)}  {file.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
