"""`uv sync --no-dev` is enough to run (issue 12, Why 6: the service install pulled in pytest,
moto, mypy and hypothesis): no runtime module imports a dev-only package."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
RUNTIME_PACKAGES = ("landing", "schemas", "warehouse", "tasks", "flows", "ops", "deployments")

PROBE = """
import importlib, importlib.abc, sys
DEV = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in DEV:
            raise ModuleNotFoundError(f"runtime code imported dev-only {name}", name=name)
sys.meta_path.insert(0, Block())
for module in sys.argv[2].split(","):
    importlib.import_module(module)
from deployments.cli import main
try:
    main(["--help"])
except SystemExit as exit:
    assert exit.code == 0
print("ok")
"""


def dev_only() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = {
        d.split(">")[0].split("=")[0].split("[")[0].strip()
        for d in project["dependency-groups"]["dev"]
    }
    runtime = {
        d.split(">")[0].split("=")[0].split("[")[0].strip()
        for d in project["project"]["dependencies"]
    }
    modules = {n.replace("-", "_") for n in names - runtime}
    # jsonschema is a dev dependency of ours (tests/test_compose.py) and a runtime one of Prefect's.
    return modules - {"types_pyyaml", "jsonschema"} | {"pytest", "moto", "mypy", "hypothesis"}


def test_runtime_modules_import_no_dev_package() -> None:
    modules = [
        info.name
        for package in RUNTIME_PACKAGES
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")
        if "fake_vendor_api" not in info.name
    ]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(sorted(dev_only())), ",".join(modules)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_the_readme_documents_the_runtime_install() -> None:
    assert "uv sync --no-dev" in (ROOT / "README.md").read_text()
