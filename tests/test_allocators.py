"""The allocator settings the `biobridge` command gives itself and the runs it starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deployments.allocators import ALLOCATOR_ENV, tune_allocators


def test_defaults_are_set_and_an_operators_value_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    tune_allocators()
    assert os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"
    assert os.environ["MALLOC_ARENA_MAX"] == ALLOCATOR_ENV["MALLOC_ARENA_MAX"]
    assert os.environ["_RJEM_MALLOC_CONF"] == ALLOCATOR_ENV["_RJEM_MALLOC_CONF"]


def test_pyarrow_in_a_process_started_after_it_uses_the_system_pool() -> None:
    """What a flow run started by `biobridge up` (or the CLI's bare run) allocates with."""
    code = (
        "from deployments.allocators import tune_allocators; tune_allocators(); "
        "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "system"
