"""What every task of one process shares: the settings, the database URL and the object store.

Tasks never receive a database URL as a parameter (Prefect would store and display it); they ask
here, and the process resolves it once (starting the embedded Postgres when none is configured).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr

from landing.settings import get_settings
from landing.store import ObjectStore, open_store
from tasks.settings import get_pipeline_settings
from warehouse.postgres import resolve_database_url


@lru_cache(maxsize=1)
def database_url() -> SecretStr:
    """The pipeline's Postgres URL for this process, wrapped until `connect` opens it."""
    return resolve_database_url(get_pipeline_settings())


@lru_cache(maxsize=1)
def landing_store() -> ObjectStore:
    """The landing store the receiver writes and the flows read."""
    settings = get_pipeline_settings()
    return open_store(settings.landing_location(), settings)


def reset() -> None:
    """Forget cached settings, URL and store (tests change the environment between cases)."""
    get_settings.cache_clear()
    get_pipeline_settings.cache_clear()
    database_url.cache_clear()
    landing_store.cache_clear()
