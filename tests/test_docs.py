"""The README is the documentation of record: it must list every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from landing.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_documents_every_setting() -> None:
    missing = [
        f"BIOBRIDGE_{name.upper()}"
        for name in Settings.model_fields
        if f"BIOBRIDGE_{name.upper()}" not in README
    ]
    assert missing == [], f"add these to the README's settings table: {missing}"


def test_readme_quick_start_has_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["uv run biobridge up", "uv run pytest"]
