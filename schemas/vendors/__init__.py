"""Pandera contracts of each vendor payload, expressed over the flat frames a flattener builds.

Pandera validates frames, not nested JSON: each flattener first normalises a payload into a
`RecordFrame` (one row per record: who and when) and a `ValueFrame` (one row per vendor value),
then validates both with ``lazy=True`` and quarantines exactly the failing rows.
"""
