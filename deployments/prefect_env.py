"""Prefect's environment, set before Prefect is imported: our home, no telemetry, quiet logs."""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect_env(data_dir: Path) -> None:
    """Defaults for Prefect under `data_dir`; a variable already set by the user wins."""
    home = (data_dir / "prefect").resolve()
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        # The temporary API takes ~15 s to start on a busy 2-core machine; 20 s is too tight.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "XDG_RUNTIME_DIR": str(home / "run"),
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
