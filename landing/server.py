"""Serve the receiver with uvicorn: `python -m landing.server` (settings from the environment)."""

from __future__ import annotations

import logging

from landing.commit_log import recover
from landing.local_store import LocalStore
from landing.open_routes import OpenRoutesRefused, check_open_routes
from landing.receiver import create_app
from landing.serving import run
from landing.settings import Settings, get_settings
from landing.store import open_store

logger = logging.getLogger("biobridge.receiver")


def serve(settings: Settings) -> None:
    """Open the landing store, build the app and serve it until SIGINT/SIGTERM."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        check_open_routes(settings)  # logs the open routes; refuses them on a public bind
    except (OpenRoutesRefused, ValueError) as exc:
        logger.error("%s", exc)
        raise SystemExit(f"biobridge receiver: {exc}") from None
    store = open_store(settings.landing_location(), settings)
    if isinstance(store, LocalStore):
        recovered = recover(store)  # before any worker starts a log of its own
        if recovered:
            logger.info("published %d objects from the log of an interrupted receiver", recovered)
        swept = store.sweep_temp_files(older_than_s=2 * settings.ack_deadline_s)
        swept += store.sweep_orphan_metas(older_than_s=2 * settings.ack_deadline_s)
        if swept:
            logger.info("removed %d temp files left by an interrupted receiver", swept)
    logger.info("receiver landing into %s on %s:%s", store.url, settings.host, settings.port)
    run(create_app(settings, store), settings)  # edge limits and workers: landing/serving.py


if __name__ == "__main__":
    serve(get_settings())
