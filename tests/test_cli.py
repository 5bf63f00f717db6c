"""The command line as a user meets it: help, one-line errors with the fix, no secret printed,
no traceback (issue 12, Why 6)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.cli import EXAMPLES, build_parser, main
from tasks import runtime


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BIOBRIDGE_DATA_DIR", str(tmp_path / "data"))
    runtime.reset()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    runtime.reset()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == set(EXAMPLES)
    for name in commands:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert f"example:\n  biobridge {name}" in out, name
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "Heavy imports" not in top and "biobridge up" in top


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00Z", "2026-11-01T00:00"])
def test_a_bad_instant_is_one_line_naming_the_format(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "--mode", "backfill", "--from", value])
    err = capsys.readouterr().err
    assert "invalid _instant value" not in err and "Traceback" not in err
    assert "2026-11-01T00:00Z" in err or "time zone" in err


def test_a_window_backwards_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "ingest", "--mode", "backfill", "--from", "2026-11-02T00:00Z",
        "--until", "2026-11-01T00:00Z",
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and "--from must be before --until" in err
    assert "pydantic" not in err and "Traceback" not in err


SECRET_URLS = [
    "postgresql://bob:t3st@only-secret@127.0.0.1:{port}/x",
    "postgresql://bob:test only-secret@127.0.0.1:{port}/x",
    "postgresql://bob smith:test-only-secret@127.0.0.1:{port}/x",
    "test-only-secret",
]


@pytest.mark.parametrize("url", SECRET_URLS)
@pytest.mark.parametrize("command", [["migrate"], ["verify"], ["health"], ["ingest"], ["db"]])
def test_no_output_ever_shows_the_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    command: list[str],
) -> None:
    monkeypatch.setenv("BIOBRIDGE_DATABASE_URL", url.format(port=closed_port()))
    code, out, err = run(capsys, *command)
    assert code != 0 or command == ["db"]
    text = out + err
    for piece in ("only-secret", "t3st", "test only", "test-only-secret"):
        assert piece not in text, (command, text)
    assert "Traceback" not in text


def test_unreachable_database_is_one_line_with_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "BIOBRIDGE_DATABASE_URL", f"postgresql://bob:test-only@127.0.0.1:{closed_port()}/x"
    )
    for command in (["migrate"], ["ingest"], ["quarantine", "list"]):
        code, out, err = run(capsys, *command)
        assert code == 2, command
        assert out == "" and err.count("\n") == 1, (command, err)
        assert "BIOBRIDGE_DATABASE_URL" in err and "Connection refused" in err


def test_verify_into_a_closed_pipe_is_quiet(pg_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOBRIDGE_")}
    env |= {"BIOBRIDGE_DATABASE_URL": pg_url, "BIOBRIDGE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", "from deployments.cli import main; raise SystemExit(main())",
         "verify", "--json"],
        env=env, capture_output=True, check=False, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.startswith("{")  # the command works with a reader ...
    reader_gone = subprocess.run(  # ... and says nothing when the reader left
        ["sh", "-c", f'"{sys.executable}" -c "from deployments.cli import main; '
         'raise SystemExit(main())" verify --json | true'],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert "BrokenPipeError" not in reader_gone.stderr and "Traceback" not in reader_gone.stderr
