"""`biobridge connect` and `biobridge tokens list|revoke --vendor` as a user runs them: a real
process, the printed URL followed like a browser, tokens stored encrypted and never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from deployments.fake_vendor_api import FakeVendorApi, start_fake_vendor_api
from tests.fetch_fixtures import token_strings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(pg_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], FakeVendorApi]]:
    with start_fake_vendor_api() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIOBRIDGE_")}
        env |= fake.env()
        env |= {
            "BIOBRIDGE_DATABASE_URL": pg_url,
            "BIOBRIDGE_DATA_DIR": str(tmp_path / "data"),
            "BIOBRIDGE_TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
        yield env, fake


def biobridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_connect_then_list_and_revoke(cli_env: tuple[dict[str, str], FakeVendorApi]) -> None:
    env, fake = cli_env
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "connect", "whoop", "--user", "bob"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    printed = []
    for line in process.stdout:
        printed.append(line)
        if line.startswith("http"):
            answer = httpx.get(line.strip(), follow_redirects=True, timeout=10)
            assert answer.status_code == 200, answer.text
            break
    out, err = process.communicate(timeout=120)
    printed.append(out)
    assert process.returncode == 0, err
    assert "connected whoop user bob (vendor user 48213)" in "".join(printed)

    listed = biobridge(env, "tokens", "list", "--vendor", "whoop")
    assert listed.returncode == 0, listed.stderr
    assert "bob" in listed.stdout and "active" in listed.stdout and "48213" in listed.stdout

    revoked = biobridge(env, "tokens", "revoke", "--vendor", "whoop", "--user", "bob")
    assert revoked.returncode == 0, revoked.stderr
    after = biobridge(env, "tokens", "list", "--vendor", "whoop")
    assert "revoked" in after.stdout and "biobridge tokens revoke" in after.stdout

    shown = "".join(printed) + err + listed.stdout + after.stdout + revoked.stdout
    assert [t for t in token_strings(fake) if t in shown] == []
