"""Postgres plumbing: connections and error classes, the embedded server, migrations and the
ledger (landed files, loads, quarantine) the pipeline stages and ops tools share."""
