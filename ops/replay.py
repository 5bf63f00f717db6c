"""Chunked replay progress for the CLI: how many chunks of a command are done."""

from __future__ import annotations

from tasks.runtime import database_url
from warehouse.postgres import connect
from warehouse.replay import command_progress as query


def command_progress(command_key: str) -> tuple[int, int] | None:
    """(chunks done, chunks in all) of the command's latest run; None before it exists."""
    with connect(database_url()) as conn:
        return query(conn, command_key)
