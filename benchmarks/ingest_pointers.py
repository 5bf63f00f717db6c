"""Ingest throughput of the pointer mix: notifications, fetches from the fake vendor API, loads.

    uv run python benchmarks/ingest_pointers.py [--notifications 2000] [--database-url URL]
        [--documented-limits]

The pointer-mix companion of benchmarks/ingest.py (kept in its own file so the `perf` branch's
rewrite of ingest.py and this do not collide; the lead may fold it in as `--pointers`).

1. A fresh database `bb_bench_<random>` (dropped at the end), migrated; a temporary landing
   folder; the fake vendor API on a free port with `--notifications` documents spread over
   Oura daily_readiness (35 %), WHOOP workouts (30 %), Polar exercises (20 %), Fitbit days
   (10 %, one collection each: activities) and Withings groups (5 %); one connected user per
   vendor (through the connect flow).
2. Lands one notification per document in the store's layout (as the receiver would).
3. Run 1 of the production flow: discover + classify every notification (deferred). Timed.
4. Run 2: the fetch stage GETs every document (the vendors' documented rate limits are lifted
   unless `--documented-limits`: WHOOP alone allows 100 requests a minute, which would measure
   the limit, not us), lands it, and the same run loads the rows. Timed, split into the fetch
   stage (HTTP, landing puts, ledger) and the load.

Reports files/s (notifications + fetched documents over both runs), and where the time goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from deployments.fake_vendor_api import EXAMPLES, start_fake_vendor_api
from landing.keys import new_key
from landing.store import ObjectMeta, open_store
from warehouse.migrate import apply_migrations
from warehouse.postgres import connect, display_url, url_with_database

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SHARES = {"oura": 0.35, "whoop": 0.30, "polar": 0.20, "fitbit": 0.10, "withings": 0.05}
USERS = {
    "oura": "c2b7e5d0-31f4-4a8e-9d62-0b5f7a3e1c98",
    "whoop": "48213",
    "fitbit": "B7QK2M",
    "withings": "38164427",
    "polar": "90317",
}
DAY0 = datetime(2024, 1, 1, tzinfo=UTC)


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def seed(fake: Any, vendor: str, n: int) -> tuple[bytes, str]:
    """Serve document n of `vendor`; return its notification body and content type."""
    day = DAY0 + timedelta(days=n)
    if vendor == "oura":
        doc = {**example("oura_daily_readiness.json"), "id": f"bench-{n}"}
        doc |= {"day": f"{day:%Y-%m-%d}", "timestamp": f"{day:%Y-%m-%d}T00:00:00+00:00"}
        fake.add_document("oura", "daily_readiness", doc, user_id=USERS["oura"])
        body = {
            "event_type": "create",
            "data_type": "daily_readiness",
            "object_id": f"bench-{n}",
            "event_time": f"{day:%Y-%m-%d}T12:00:00+00:00",
            "user_id": USERS["oura"],
        }
    elif vendor == "whoop":
        rid = str(uuid.UUID(int=n))
        start = day.isoformat().replace("+00:00", "Z")
        end = (day + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        doc = {**example("whoop_workout.json"), "id": rid, "start": start, "end": end}
        fake.add_document("whoop", "workout", doc, user_id=USERS["whoop"])
        body = {"user_id": 48213, "id": rid, "type": "workout.updated", "trace_id": "b"}
    elif vendor == "polar":
        doc = {**example("polar_exercise.json"), "id": f"ex{n}"}
        doc["start-time"] = f"{day:%Y-%m-%d}T10:00:00"
        fake.add_document("polar", "exercise", doc, user_id=USERS["polar"], key=f"ex{n}")
        body = {
            "event": "EXERCISE",
            "user_id": 90317,
            "entity_id": f"ex{n}",
            "timestamp": day.isoformat(),
            "url": f"https://www.polaraccesslink.com/v3/exercises/ex{n}",
        }
    elif vendor == "fitbit":
        doc = example("fitbit_heart_rate_summary.json")
        doc = json.loads(json.dumps(doc).replace("2025-07-28", f"{day:%Y-%m-%d}"))
        fake.add_document(
            "fitbit", "activities-heart", doc, user_id=USERS["fitbit"], accept_language="en_GB"
        )
        item = {
            "collectionType": "activities",
            "date": f"{day:%Y-%m-%d}",
            "ownerId": USERS["fitbit"],
            "ownerType": "user",
            "subscriptionId": "bench-activities",
        }
        return json.dumps([item]).encode(), "application/json"
    else:
        group = {**example("withings_measures.json")["body"]["measuregrps"][0]}
        stamp = int(day.timestamp())
        group |= {"grpid": 10_000 + n, "date": stamp, "modified": stamp}
        fake.add_document("withings", "measuregrp", group, user_id=USERS["withings"])
        form = f"userid={USERS['withings']}&appli=1&startdate={stamp}&enddate={stamp + 1}"
        return form.encode(), "application/x-www-form-urlencoded"
    return json.dumps(body).encode(), "application/json"


def land(store: Any, vendor: str, body: bytes, content_type: str) -> None:
    now = datetime.now(UTC)
    ext = "form" if content_type.startswith("application/x-www") else "json"
    meta = ObjectMeta.of_body(
        body,
        received_at=now,
        vendor=vendor,
        content_type=content_type,
        delivery_id=secrets.token_hex(8),
        signature="bench",
        context={"user_id": USERS[vendor]},
    )
    store.put(new_key(vendor, now, ext=ext), body, meta)


class Clock:
    """Busy seconds per label, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--documented-limits", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bb-bench-ptr-"))
    database = f"bb_bench_{secrets.token_hex(4)}"
    with connect(args.database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
    db_url = url_with_database(args.database_url, database)
    try:
        print(f"database {database} on {display_url(args.database_url)}, folder {work}")
        apply_migrations(db_url)
        run(args, work, db_url)
    finally:
        with connect(args.database_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, db_url: str) -> None:
    with start_fake_vendor_api(seed=False) as fake:
        os.environ.update(fake.env())
        os.environ.update(
            {
                "BIOBRIDGE_DATA_DIR": str(work / "data"),
                "BIOBRIDGE_LANDING_URL": (work / "landing").as_uri(),
                "BIOBRIDGE_DATABASE_URL": db_url,
                "BIOBRIDGE_TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "BIOBRIDGE_FETCH_BATCH": "200",
            }
        )
        from deployments.prefect_env import configure_prefect_env

        configure_prefect_env(work / "data")
        import io

        from flows.ingest import IngestParams, ingest
        from ops.connect import connect_user
        from tasks import vendor_http
        from tasks.fetch import limiter, stage
        from tasks.settings import PipelineSettings
        from tasks.vendor_settings import FACTS, VendorApiSettings

        if not args.documented_limits:
            limiter.FACTS = {v: dataclasses.replace(f, rate_limits=()) for v, f in FACTS.items()}
        for vendor in SHARES:
            status = connect_user(
                vendor,
                user=f"bench-{vendor}",
                settings=PipelineSettings(),
                apis=VendorApiSettings(),
                out=io.StringIO(),
                on_url=lambda url: httpx.get(url, follow_redirects=True, timeout=10),
            )
            assert status == 0, vendor

        store = open_store((work / "landing").as_uri())
        counts: dict[str, int] = {}
        n = 0
        for vendor, share in SHARES.items():
            counts[vendor] = max(1, round(args.notifications * share))
            for _ in range(counts[vendor]):
                land(store, vendor, *seed(fake, vendor, n))
                n += 1
        print(f"landed {n} notifications: {counts}")

        clock = Clock()
        vendor_http.VendorClient._send = clock.wrap(  # type: ignore[method-assign]
            "vendor HTTP (incl. fake's answer)", vendor_http.VendorClient._send
        )
        stage._fetch_and_land = clock.wrap("fetch per request", stage._fetch_and_land)
        stage.land_documents = clock.wrap("land a batch (parallel puts)", stage.land_documents)
        stage.resolve = clock.wrap("resolve per notification", stage.resolve)
        from landing.local_store import LocalStore

        LocalStore.put = clock.wrap("landing put (fsync'd)", LocalStore.put)  # type: ignore[method-assign]
        stage.store_conn.find_connection = clock.wrap(
            "connection look-up + decrypt", stage.store_conn.find_connection
        )
        from prefect import flow

        @flow(name="bench-warm-up")
        def warm_up() -> None:
            """Start the ephemeral API before the clock does."""

        warm_up()

        started = time.perf_counter()
        first = ingest(IngestParams())
        t1 = time.perf_counter() - started
        started = time.perf_counter()
        second = ingest(IngestParams())
        t2 = time.perf_counter() - started
        fetch = second["fetch_counts"]
        fetch = json.loads(fetch) if isinstance(fetch, str) else fetch
        with connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT state, count(*) FROM biobridge.notifications GROUP BY 1")
            states = dict(cur.fetchall())
            cur.execute("SELECT count(*) FROM public.biometric_events")
            (rows,) = cur.fetchone() or (0,)
        files = first["files_read"] + second["files_read"]
        print(f"run 1 (classify {first['files_read']} notifications): {t1:.2f} s")
        print(
            f"run 2 (fetch {fetch['notifications_claimed']} notifications, land "
            f"{fetch['documents_landed']} documents, load {second['files_read']} files, "
            f"{second['rows_inserted']} rows): {t2:.2f} s"
        )
        print(
            f"  fetch stage: {fetch['seconds_fetching']:.2f} s; rest of run 2 (discover, load, "
            f"flow): {t2 - fetch['seconds_fetching']:.2f} s"
        )
        for label, seconds in clock.seconds.items():
            print(
                f"  {label}: {seconds:.2f} s over {clock.calls[label]} calls "
                f"({1000 * seconds / max(1, clock.calls[label]):.2f} ms each)"
            )
        print(f"notification states: {states}; rows in biometric_events: {rows}")
        print(
            f"files/s over both runs: {files / (t1 + t2):.0f} ({files} files: notifications + "
            f"fetched documents); notifications resolved/s in the fetch stage: "
            f"{fetch['notifications_claimed'] / max(fetch['seconds_fetching'], 1e-9):.0f}"
        )
        if not args.documented_limits:
            print("vendor rate limits lifted (--documented-limits to apply them)")


if __name__ == "__main__":
    main()
