"""Database errors split once into transient (retry) and permanent (fail or quarantine)."""

from __future__ import annotations


class DatabaseError(Exception):
    """A database failure whose message is safe to log: it never holds a password."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class TransientDatabaseError(DatabaseError):
    """Worth retrying after a backoff, on a new connection: lost connection, conflict, overload."""


class PermanentDatabaseError(DatabaseError):
    """Retrying will not help: bad credentials, missing database, invalid SQL or data."""


class MigrationError(PermanentDatabaseError):
    """A migration file could not be applied, or no longer matches what was applied."""


class EmbeddedPostgresError(PermanentDatabaseError):
    """The embedded PostgreSQL server could not be started or recovered."""


QUERY_CANCELED = "57014"


def cancelled_query(error: BaseException) -> bool:
    """Whether `error` is a query cancelled under this process. ADBC answers a SIGINT that
    arrives during a blocking call on the main thread by cancelling the query and raising its
    error (SQLSTATE 57014), not KeyboardInterrupt: for a run, that error is the stop signal."""
    return getattr(error, "sqlstate", None) == QUERY_CANCELED
