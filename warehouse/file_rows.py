"""Which rows of `biometric_events` are a landed file's: one rule for every query that asks.

A load writes a row's `delivery_seq` and `source_key` together, from the file's ledger row
(`biobridge.landed_files`). The rows of a file are found by its delivery number, which is indexed
(migration 0013), and checked against its key as well, so a row written otherwise (which `biobridge
verify` names as `delivery_mismatch`) is never taken for the file's.
"""

from __future__ import annotations


def rows_of_file(events: str, files: str) -> str:
    """SQL: row alias `events` (biometric_events) belongs to ledger row alias `files`."""
    return (
        f"{events}.delivery_seq = {files}.delivery_seq AND {events}.source_key = {files}.object_key"
    )
