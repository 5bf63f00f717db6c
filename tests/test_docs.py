"""The README is the documentation of record: it must list every setting the code reads, say
which process reads it, and describe the tree as it is."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from landing.settings import Settings
from tasks.settings import PIPELINE_ONLY_ENV, PipelineSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _settings_rows() -> dict[str, str]:
    """Each BIOBRIDGE_ variable of the settings table -> its "read by" cell."""
    rows: dict[str, str] = {}
    for line in _section("Settings").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4:
            for name in re.findall(r"`(BIOBRIDGE_[A-Z0-9_]+)`", cells[0]):
                rows[name] = cells[2]
    return rows


def test_readme_documents_every_setting() -> None:
    names = [f"BIOBRIDGE_{name.upper()}" for name in PipelineSettings.model_fields]
    missing = [name for name in names if name not in _settings_rows()]
    assert missing == [], f"add these to the README's settings table: {missing}"


def test_the_code_reads_biobridge_variables_only_through_the_settings() -> None:
    fields = {f"BIOBRIDGE_{name.upper()}" for name in PipelineSettings.model_fields}
    read = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()["'](BIOBRIDGE_[A-Z0-9_]+)""")
    stray = {
        f"{path.relative_to(ROOT)}: {name}"
        for package in ("landing", "schemas", "warehouse", "tasks", "flows", "ops", "deployments")
        for path in (ROOT / package).rglob("*.py")
        for name in read.findall(path.read_text())
        if name not in fields
    }
    assert stray == set(), "read these through a settings class (and document them)"


def test_readme_says_which_process_reads_each_setting() -> None:
    rows = _settings_rows()
    for name in Settings.model_fields:
        assert rows[f"BIOBRIDGE_{name.upper()}"] in ("receiver", "both"), name
    for name in PIPELINE_ONLY_ENV:
        assert rows[name] == "pipeline", name


def test_readme_layout_table_lists_exactly_the_top_level_folders() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    folders = {f.split("/", 1)[0] for f in files if "/" in f and not f.startswith(".")}
    layout = _section("How it works").split("### Layout", 1)[1]
    listed = set(re.findall(r"^\| `([a-z_]+)/` \|", layout, flags=re.M))
    assert listed == folders


def test_readme_quick_start_has_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["uv run biobridge up", "uv run pytest"]
