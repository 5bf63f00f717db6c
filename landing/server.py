"""Serve the receiver with uvicorn: `python -m landing.server` (settings from the environment)."""

from __future__ import annotations

import logging

import uvicorn

from landing.receiver import create_app
from landing.settings import Settings, get_settings
from landing.store import open_store

logger = logging.getLogger("biobridge.receiver")


def serve(settings: Settings) -> None:
    """Open the landing store, build the app and serve it until SIGINT/SIGTERM."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = open_store(settings.landing_location(), settings)
    logger.info("receiver landing into %s on %s:%s", store.url, settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings, store),
        host=settings.host,
        port=settings.port,
        access_log=False,  # the receiver logs one structured line per request itself
        server_header=False,
        lifespan="off",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    serve(get_settings())
