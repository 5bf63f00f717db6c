"""Hostile input through the pipeline (issue 4): whatever a sender posts, `plan_batch` never
raises, every file ends in exactly one state, and nothing unloadable reaches a staged row or a
quarantine column (Postgres text and jsonb refuse NUL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import hypothesis
import orjson
import polars as pl
import pytest
from hypothesis import strategies as st

from landing.keys import VENDORS, new_key
from landing.store import ObjectMeta
from ops.verify import verify
from schemas.canonical import CanonicalRow
from tasks.batch import plan_batch
from tasks.read import LandedFile
from tests.pipeline import Pipeline
from warehouse.postgres import connect

NOW = datetime.now(UTC)
WEIRD_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\u202e", "\ud7ff", "\U0001f600", "\ufeff", "é" * 300, "x" * 5000]
)
TEXT = st.text(max_size=12) | WEIRD_TEXT
HUGE_INTS = st.sampled_from([2**64, -(2**64), 2**63, 10**400, -(10**30), 2**53 + 1])
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e308, 5e-324])
STAMPS = st.sampled_from(
    [
        "2025-07-28T19:28:15Z",
        "2025-07-28T19:28:15",  # no zone
        "2025-07-28 07:12:00 -0700",
        "9999-12-31T23:59:59Z",
        "275760-09-13T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2025-02-30T00:00:00Z",
        "\x002025-07-28T19:28:15Z",
        "now",
    ]
)
EPOCHS = st.sampled_from([0, -1, -(2**40), 1753599600, 1753599600000, 2**62, 2**70, 1e308])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | HUGE_INTS
    | FLOATS
    | TEXT
    | STAMPS
    | EPOCHS
)
FIELD_NAMES = st.sampled_from(
    [
        "user_id",
        "timestamp",
        "data",
        "event_type",
        "readiness_score",
        "resting_heart_rate",
        "hrv_balance",
        "userId",
        "summaryId",
        "startTimeInSeconds",
        "startTimeOffsetInSeconds",
        "durationInSeconds",
        "steps",
        "timeOffsetHeartRateSamples",
        "timeOffsetStressLevelValues",
        "callbackURL",
        "metrics",
        "name",
        "units",
        "date",
        "qty",
        "Avg",
        "Min",
        "Max",
    ]
)
KEYS = FIELD_NAMES | TEXT
JSON_ANY = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right kind of value, sometimes anything at all."""
    return st.one_of(good, good, JSON_ANY)


GENERIC = st.fixed_dictionaries(
    {
        "user_id": either(st.sampled_from(["u1", "u2", 42, " "]) | TEXT),
        "timestamp": either(STAMPS),
        "data": either(
            st.dictionaries(
                st.sampled_from(
                    ["readiness_score", "resting_heart_rate", "hrv_balance", "sleep_score"]
                )
                | TEXT,
                SCALARS,
                max_size=6,
            )
        ),
    },
    optional={"event_type": TEXT, "extra": JSON_ANY},
)
GARMIN_SUMMARY = st.fixed_dictionaries(
    {
        "userId": either(st.sampled_from(["g1", "g2"]) | TEXT),
        "startTimeInSeconds": either(EPOCHS),
    },
    optional={
        "summaryId": TEXT,
        "startTimeOffsetInSeconds": either(EPOCHS),
        "durationInSeconds": either(EPOCHS),
        "steps": SCALARS,
        "restingHeartRateInBeatsPerMinute": SCALARS,
        "timeOffsetHeartRateSamples": either(
            st.dictionaries(st.sampled_from(["0", "15", "-15", "x", "1e9"]) | TEXT, SCALARS)
        ),
        "timeOffsetStressLevelValues": either(
            st.dictionaries(st.sampled_from(["0", "180"]) | TEXT, SCALARS)
        ),
    },
)
GARMIN = st.dictionaries(
    st.sampled_from(["dailies", "sleeps", "stressDetails", "hrv", "pulseox", "bodyComps"]) | TEXT,
    either(st.lists(either(GARMIN_SUMMARY), max_size=3)),
    max_size=3,
)
HAE_SAMPLE = st.fixed_dictionaries(
    {"date": either(STAMPS)},
    optional={"qty": SCALARS, "Avg": SCALARS, "Min": SCALARS, "Max": SCALARS, "source": TEXT},
)
HAE = st.fixed_dictionaries(
    {
        "data": either(
            st.fixed_dictionaries(
                {
                    "metrics": either(
                        st.lists(
                            either(
                                st.fixed_dictionaries(
                                    {
                                        "name": either(
                                            st.sampled_from(
                                                ["heart_rate", "resting_heart_rate", "step_count"]
                                            )
                                        ),
                                        "units": either(st.sampled_from(["count/min", "count"])),
                                        "data": either(st.lists(either(HAE_SAMPLE), max_size=4)),
                                    }
                                )
                            ),
                            max_size=3,
                        )
                    )
                }
            )
        )
    },
    optional={"user_id": TEXT},
)


def dumps(value: Any) -> bytes:
    """JSON as a sender might write it: big integers as digits (orjson refuses them)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


RAW_BODIES = st.sampled_from(
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"{",
        b"[]",
        b"null",
        b"42",
        b'{"a": NaN}',
        b'{"x": 1e400}',
        b'{"user_id":"u1","user_id":"u2","timestamp":"2025-07-28T19:28:15Z","data":{"sleep_score":1}}',
        b'{"user_id":"u1","timestamp":"2025-07-28T19:28:15Z","data":{"sleep_score":1,"sleep_score":"x"}}',
        b'{"dailies":[{"userId":"g","userId":null,"startTimeInSeconds":1753599600,"steps":1}]}',
        b"[" * 2000 + b"]" * 2000,
        b'{"data":{"metrics":[{"name":"heart_rate","units":"count/min",'
        b'"data":[{"date":"2025-07-28 07:12:00 -0700","qty":' + b"9" * 400 + b"}]}]}}",
        b"userid=1&appli=44&startdate=1&enddate=2",
        b"a=%00&b",
    ]
)
BODIES = st.one_of(
    GENERIC.map(dumps),
    GARMIN.map(dumps),
    HAE.map(dumps),
    JSON_ANY.map(dumps),
    RAW_BODIES,
    st.binary(max_size=64),
)
HEADERS = st.sampled_from([{}, {"X-Oura-Signature": "x"}, {"\x00": "\x00"}])
CONTEXT = st.sampled_from([{}, {"user_id": "ctx_user"}, {"user_id": "a\x00b"}])


def landed(
    vendor: str, body: bytes, headers: dict[str, str], context: dict[str, str]
) -> LandedFile:
    ext = "form" if vendor == "withings" and not body.startswith((b"{", b"[")) else "json"
    received = NOW - timedelta(minutes=5)
    meta = ObjectMeta.of_body(
        body,
        received_at=received,
        vendor=vendor,
        content_type="application/json",
        delivery_id="delivery-1",
        headers=headers,
        context=context,
    )
    return LandedFile(key=new_key(vendor, received, ext=ext), body=body, meta=meta)


def strings_of(table: Any) -> list[str]:
    return [
        v
        for column in table.columns
        for v in column.to_pylist()
        if isinstance(v, str)  # non-text columns hold no str
    ]


def check_plan(files: list[LandedFile]) -> None:
    plan = plan_batch(files, load_id=7)  # never raises: hypothesis reports it if it does

    results = plan.file_results.to_pylist()
    assert [r["object_key"] for r in results] == [f.key for f in files]
    assert {r["state"] for r in results} <= {"loaded", "quarantined", "deferred"}

    for q in plan.quarantine.to_pylist():
        assert q["reason"] and q["field"], q
        assert q["field"] != "<flattener>", q["reason"]  # a flattener crash is a Biobridge bug
    bad_text = [s for s in strings_of(plan.quarantine) + strings_of(plan.stage) if "\x00" in s]
    assert bad_text == [], bad_text[:3]

    stage = pl.from_arrow(plan.stage)
    assert isinstance(stage, pl.DataFrame)
    for metadata in stage["metadata"]:
        assert "\\u0000" not in metadata  # jsonb refuses \u0000 too
        orjson.loads(metadata)
    keys = stage.select("user_id", "device_type", "metric_type", "timestamp")
    assert keys.n_unique() == keys.height
    CanonicalRow.validate(
        stage.select(
            "user_id",
            "device_type",
            "metric_type",
            "value",
            "unit",
            "timestamp",
            pl.lit(0, pl.Int64).alias("file_no"),
            pl.col("record_index").cast(pl.Int64),
            pl.col("metadata").alias("source_field"),
        ),
        lazy=True,
    )
    loaded = {r["object_key"] for r in results if r["state"] == "loaded"}
    assert set(stage["source_key"]) <= loaded


@hypothesis.settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
)
@hypothesis.given(
    st.lists(st.tuples(st.sampled_from(VENDORS), BODIES, HEADERS, CONTEXT), min_size=1, max_size=6)
)
def test_plan_batch_survives_any_body(items: list[tuple[str, bytes, dict[str, str], Any]]) -> None:
    check_plan([landed(*item) for item in items])


HOSTILE_E2E: list[tuple[str, bytes]] = [
    (
        "generic",
        dumps(
            {"user_id": "a\x00b", "timestamp": "2025-07-28T19:28:15Z", "data": {"sleep_score": 1}}
        ),
    ),
    (
        "generic",
        dumps(
            {
                "user_id": "nul_value",
                "timestamp": "2025-07-28T19:28:15Z",
                "data": {"sleep_score": "\x00"},
            }
        ),
    ),
    (
        "generic",
        dumps(
            {"user_id": "nul_key", "timestamp": "2025-07-28T19:28:15Z", "data": {"sl\x00eep": 1}}
        ),
    ),
    (
        "generic",
        dumps({"user_id": "u", "timestamp": "2025-07-28T19:28:15", "data": {"sleep_score": 2}}),
    ),
    (
        "generic",
        dumps({"user_id": "u", "timestamp": "2999-01-01T00:00:00Z", "data": {"sleep_score": 3}}),
    ),
    ("generic", dumps({"user_id": "u", "timestamp": -1, "data": {"sleep_score": 4}})),
    (
        "generic",
        dumps(
            {"user_id": "u", "timestamp": "2025-07-28T19:28:15Z", "data": {"sleep_score": 2**70}}
        ),
    ),
    (
        "generic",
        dumps(
            {"user_id": "u", "timestamp": "2025-07-28T19:28:15Z", "data": {"sleep_score": 1e308}}
        ),
    ),
    ("generic", dumps({"user_id": ["x"], "timestamp": {}, "data": {"sleep_score": [1]}})),
    (
        "generic",
        dumps(
            {"user_id": "u" * 5000, "timestamp": "2025-07-28T19:28:15Z", "data": {"sleep_score": 5}}
        ),
    ),
    (
        "generic",
        b'{"user_id":"dup","user_id":"dup2","timestamp":"2025-07-28T19:28:15Z","data":{"sleep_score":6}}',
    ),
    (
        "oura",
        dumps(
            {"user_id": "u", "timestamp": "2025-07-28T19:28:15Z", "data": {"x": [[[[[[[[1]]]]]]]]}}
        ),
    ),
    ("oura", b'{"deep": ' + b"[" * 200 + b"{}" + b"]" * 200 + b"}"),
    (
        "garmin",
        dumps({"dailies": [{"userId": "g\x00", "startTimeInSeconds": 1753599600, "steps": 1}]}),
    ),
    ("garmin", dumps({"dailies": [{"userId": "g", "startTimeInSeconds": 2**70, "steps": 1}]})),
    ("garmin", dumps({"dailies": [{"userId": "g", "startTimeInSeconds": -(2**40), "steps": 2}]})),
    (
        "garmin",
        dumps(
            {
                "dailies": [
                    {
                        "userId": "g",
                        "startTimeInSeconds": 1753599600,
                        "timeOffsetHeartRateSamples": {"x\x00": 1, "15": "\x00", "30": 10**30},
                    }
                ]
            }
        ),
    ),
    ("garmin", dumps({"dailies": "nope", "sleeps": [1, None, "x"]})),
    (
        "garmin",
        dumps({"dailies": [{"userId": "g", "startTimeInSeconds": 1753599600, "steps": 1}] * 3000}),
    ),
    (
        "apple_health",
        dumps(
            {
                "data": {
                    "metrics": [
                        {
                            "name": "heart_rate\x00",
                            "units": "count/min",
                            "data": [{"date": "2025-07-28 07:12:00 -0700", "qty": 1}],
                        }
                    ]
                }
            }
        ),
    ),
    (
        "apple_health",
        dumps(
            {
                "data": {
                    "metrics": [
                        {
                            "name": "heart_rate",
                            "units": "\x00",
                            "data": [{"date": "\x00", "Avg": 1e308}],
                        }
                    ]
                }
            }
        ),
    ),
]


def test_hostile_bodies_through_http_and_a_flow_run(pipeline: Pipeline) -> None:
    keys: list[str] = []
    for vendor, body in HOSTILE_E2E:
        r = pipeline.post(vendor, body)
        assert r.status_code == 202, (vendor, body[:80], r.text)
        keys.append(r.json()["object_key"])

    state = pipeline.ingest()
    assert state.is_completed(), state

    with connect(pipeline.db_url) as conn:
        report = verify(conn, pipeline.store)
    assert report.ok, "\n".join(map(str, report.discrepancies[:20]))
    ledger = dict(
        pipeline.query(
            "SELECT object_key, state FROM biobridge.landed_files WHERE object_key = ANY($1)",
            (keys,),
        )
    )
    assert set(ledger) == set(keys)
    assert set(ledger.values()) <= {"loaded", "quarantined"}
    quarantined = [k for k, s in ledger.items() if s == "quarantined"]
    reasons = dict(
        pipeline.query(
            "SELECT object_key, min(reason) FROM biobridge.quarantine "
            "WHERE object_key = ANY($1) GROUP BY 1",
            (quarantined,),
        )
    )
    assert all(reasons.get(k) for k in quarantined), reasons


@pytest.mark.parametrize(
    "path", ["/webhooks/..%2F..%2Fetc", "/webhooks/../../etc", "/webhooks/%2e%2e/%2e%2e/etc"]
)
def test_traversal_vendor_paths_are_404_json(pipeline: Pipeline, path: str) -> None:
    before = sorted(pipeline.settings.data_dir.rglob("*"))
    with httpx.Client(base_url=pipeline.receiver_url, timeout=10) as client:
        r = client.post(path, content=b'{"a": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 404, r.text
    assert r.json()["status"] == "rejected"
    assert sorted(pipeline.settings.data_dir.rglob("*")) == before


@pytest.mark.parametrize(
    "body", [b'{"a": 1e400}', b'{"a": -1e400}', b'{"a": ' + b"9" * 400 + b"}", b'{"a": 1e-400}']
)
def test_huge_numbers_are_refused_or_landed_as_sent_never_500(
    pipeline: Pipeline, body: bytes
) -> None:
    r = pipeline.post("generic", body)
    assert r.status_code in {202, 400}, r.text
    if r.status_code == 400:
        assert r.json()["error"] == "invalid_json" and r.json()["detail"]
    else:
        assert pipeline.store.get(r.json()["object_key"])[0] == body


@pytest.mark.parametrize("vendor, body", HOSTILE_E2E, ids=range(len(HOSTILE_E2E)))
def test_plan_batch_on_hand_picked_hostile_bodies(vendor: str, body: bytes) -> None:
    check_plan([landed(vendor, body, {}, {}), landed(vendor, body, {}, {"user_id": "ctx"})])
