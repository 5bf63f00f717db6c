"""The code version recorded on every load, so a row can be traced to the code that wrote it."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tasks.settings import get_pipeline_settings


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<package version>+<git sha>` when run from a checkout, else the package version."""
    try:
        base = version("biobridge")
    except PackageNotFoundError:
        base = "0+unknown"
    if configured := get_pipeline_settings().code_version:
        return configured
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH is intended
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+{sha}" if sha else base
