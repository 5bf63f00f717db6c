"""`biobridge lineage`: where a row came from, what an object produced, what a load did.

Three questions, one answer shape (a JSON-ready dict with `kind`), and a text rendering of each:
- a row (`123` or `row:123`): its object, delivery id and the vendor request headers the receiver
  kept, the notification it was fetched for (pointer vendors), its load, that load's flow run
  (with its Prefect UI link) and code version;
- an object (`raw/<vendor>/...`): its ledger state, the rows it produced, its quarantine entries
  and its notification or fetched documents;
- a load (`load:7`): its counts and the objects it settled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from landing.store import ObjectStore, StoreError
from schemas.loads import LOAD_TOTALS
from warehouse.postgres import Connection

ROW_FIELDS = (
    'id, user_id, device_type, metric_type, value, unit, "timestamp", received_at, '
    "source_key, record_index, load_id, deleted_at"
)
"""What an object's answer lists of each of its rows (a row's own answer has every column but
`raw_data`, so columns added later show up)."""

_ROWS_OF_FILE = (
    "delivery_seq = (SELECT delivery_seq FROM biobridge.landed_files WHERE object_key = $1) "
    "AND source_key = $1"
)
"""The rows of file $1: found by its delivery number (indexed, migration 0013), then its key."""


class LineageError(LookupError):
    """Nothing matches what was asked; the message says what to ask instead."""


def parse_target(target: str) -> tuple[str, str]:
    """("row" | "load" | "object", value) of `123`, `row:123`, `load:7` or an object key."""
    kind, sep, value = target.partition(":")
    if sep and kind in ("row", "load"):
        if not value.isdigit():
            raise LineageError(f"{target!r}: expected {kind}:<number>, e.g. {kind}:12")
        return kind, value
    if target.isdigit():
        return "row", target
    if target.startswith("raw/"):
        return "object", target
    raise LineageError(
        f"{target!r} is not a row id, load:<id> or object key: use e.g. 123, load:7 or "
        "raw/oura/dt=2026-11-01/hour=09/<id>.json"
    )


def _json_rows(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Rows of `sql` (which selects one `to_jsonb(...)::text` column) as dicts."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = [json.loads(text) for (text,) in cur.fetchall()]
    conn.commit()
    return rows


def _one(conn: Connection, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    rows = _json_rows(conn, sql, params)
    return rows[0] if rows else None


def _load(conn: Connection, load_id: int | None, ui_url: str) -> dict[str, Any] | None:
    if load_id is None:
        return None
    load = _one(
        conn, "SELECT to_jsonb(l)::text FROM biobridge.loads AS l WHERE load_id = $1", (load_id,)
    )
    if load is not None:
        run = load.get("flow_run_id")
        load["flow_run_url"] = f"{ui_url}/runs/flow-run/{run}" if run else None
    return load


def _delivery(store: ObjectStore, key: str) -> dict[str, Any]:
    """What the receiver kept beside the body: delivery id, signature check, headers, context."""
    try:
        _body, meta = store.get(key)
    except StoreError as exc:
        return {"error": f"object {key} could not be read from the landing store: {exc}"}
    return {
        "delivery_id": meta.delivery_id,
        "delivery_id_source": meta.delivery_id_source,
        "received_at": meta.received_at.isoformat(),
        "content_type": meta.content_type,
        "signature": meta.signature,
        "signature_verified": meta.signature_verified,
        "headers": meta.headers,
        "context": meta.context,
    }


def _pointer(conn: Connection, key: str) -> dict[str, Any]:
    """The notification a fetched document answers, or the documents a notification fetched."""
    fetched_for = _one(
        conn,
        "SELECT to_jsonb(d)::text FROM biobridge.fetched_documents AS d WHERE object_key = $1",
        (key,),
    )
    documents = _json_rows(
        conn,
        "SELECT to_jsonb(d)::text FROM biobridge.fetched_documents AS d "
        "WHERE notification_key = $1 ORDER BY object_key",
        (key,),
    )
    notification = _one(
        conn,
        "SELECT to_jsonb(n)::text FROM biobridge.notifications AS n WHERE object_key = $1",
        (key,),
    )
    return {"fetched_for": fetched_for, "notification": notification, "documents": documents}


def row_lineage(
    conn: Connection, store: ObjectStore, row_id: int, *, ui_url: str
) -> dict[str, Any]:
    """A row's object, delivery, kept headers, load, flow run and code version."""
    row = _one(
        conn,
        "SELECT (to_jsonb(e) - 'raw_data')::text FROM public.biometric_events AS e WHERE id = $1",
        (row_id,),
    )
    if row is None:
        raise LineageError(
            f"no row {row_id} in public.biometric_events (for load {row_id} ask "
            f"`biobridge lineage load:{row_id}`)"
        )
    key = row.get("source_key")
    obj = None
    if key:
        obj = _one(
            conn,
            "SELECT to_jsonb(f)::text FROM biobridge.landed_files AS f WHERE object_key = $1",
            (key,),
        )
    load = _load(conn, row.get("load_id"), ui_url)
    return {
        "kind": "row",
        "row": row,
        "object": obj,
        "delivery": _delivery(store, key) if key else None,
        "pointer": _pointer(conn, key) if key else None,
        "load": load,
        # The version that derived the row when the table records it, else its load's.
        "code_version": row.get("code_version") or (load or {}).get("code_version"),
    }


def object_lineage(
    conn: Connection, store: ObjectStore, key: str, *, ui_url: str, limit: int
) -> dict[str, Any]:
    """An object's ledger state, the rows it produced (first `limit`), quarantine, pointers."""
    obj = _one(
        conn,
        "SELECT to_jsonb(f)::text FROM biobridge.landed_files AS f WHERE object_key = $1",
        (key,),
    )
    if obj is None:
        raise LineageError(
            f"{key} is not in the ledger (biobridge.landed_files): check the key "
            "(`biobridge quarantine list` and `biobridge lineage <row id>` show keys), or run "
            "`biobridge ingest` if it landed after the last run"
        )
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM public.biometric_events WHERE {_ROWS_OF_FILE}", (key,))  # noqa: S608 - fixed text
        (total,) = cur.fetchone() or (0,)
    conn.commit()
    rows = _json_rows(
        conn,
        f"SELECT to_jsonb(e)::text FROM (SELECT {ROW_FIELDS} FROM public.biometric_events "  # noqa: S608 - fixed columns
        f"WHERE {_ROWS_OF_FILE} ORDER BY record_index, metric_type, id LIMIT $2) AS e",
        (key, limit),
    )
    quarantine = _json_rows(
        conn,
        "SELECT to_jsonb(q)::text FROM biobridge.quarantine AS q WHERE object_key = $1 "
        "ORDER BY quarantine_id",
        (key,),
    )
    return {
        "kind": "object",
        "object": obj,
        "delivery": _delivery(store, key),
        "rows_total": int(total),
        "rows": rows,
        "quarantine": quarantine,
        "pointer": _pointer(conn, key),
        "load": _load(conn, obj.get("load_id"), ui_url),
    }


def load_lineage(conn: Connection, load_id: int, *, ui_url: str, limit: int) -> dict[str, Any]:
    """A load's record (counts, status, flow run, code version) and the objects it settled."""
    load = _load(conn, load_id, ui_url)
    if load is None:
        raise LineageError(
            f"no load {load_id} in biobridge.loads (for row {load_id} ask "
            f"`biobridge lineage {load_id}`)"
        )
    states = _json_rows(
        conn,
        "SELECT json_build_object('state', state, 'files', count(*))::text "
        "FROM biobridge.landed_files WHERE load_id = $1 GROUP BY state ORDER BY state",
        (load_id,),
    )
    objects = _json_rows(
        conn,
        "SELECT json_build_object('object_key', object_key, 'vendor', vendor, 'state', state, "
        "'rows_loaded', rows_loaded, 'records_quarantined', records_quarantined)::text "
        "FROM biobridge.landed_files WHERE load_id = $1 ORDER BY received_at, object_key "
        "LIMIT $2",
        (load_id, limit),
    )
    return {
        "kind": "load",
        "load": load,
        "objects_by_state": {s["state"]: s["files"] for s in states},
        "objects": objects,
    }


def answer(
    conn: Connection,
    store: Callable[[], ObjectStore],
    target: str,
    *,
    ui_url: str,
    limit: int = 50,
) -> dict[str, Any]:
    """The lineage of `target` (a row id, `load:<id>` or an object key)."""
    kind, value = parse_target(target)
    if kind == "row":
        return row_lineage(conn, store(), int(value), ui_url=ui_url)
    if kind == "load":
        return load_lineage(conn, int(value), ui_url=ui_url, limit=limit)
    return object_lineage(conn, store(), value, ui_url=ui_url, limit=limit)


def _headers(delivery: dict[str, Any] | None) -> list[str]:
    if not delivery:
        return []
    if "error" in delivery:
        return [f"  delivery   {delivery['error']}"]
    lines = [
        f"  delivery   {delivery['delivery_id']} (id from the {delivery['delivery_id_source']}), "
        f"received {delivery['received_at']}, signature "
        f"{delivery['signature'] or 'not recorded'}"
        f"{' (verified)' if delivery['signature_verified'] else ''}"
    ]
    headers = delivery["headers"]
    lines.append(
        "  headers    "
        + (", ".join(f"{k}: {v}" for k, v in sorted(headers.items())) or "none kept")
    )
    if delivery["context"]:
        lines.append(
            "  context    " + ", ".join(f"{k}={v}" for k, v in sorted(delivery["context"].items()))
        )
    return lines


def _load_lines(load: dict[str, Any] | None) -> list[str]:
    if load is None:
        return ["  load       none recorded"]
    lines = [
        f"  load       {load['load_id']} ({load['kind']}, {load['status']}, started "
        f"{load['started_at']})",
        f"  code       {load['code_version']}",
    ]
    if load.get("flow_run_id"):
        lines.insert(1, f"  flow run   {load['flow_run_id']}  {load['flow_run_url']}")
    return lines


def _pointer_lines(pointer: dict[str, Any] | None) -> list[str]:
    if not pointer:
        return []
    lines = []
    if doc := pointer["fetched_for"]:
        lines.append(
            f"  fetched    {doc['resource']} for notification {doc['notification_key']} "
            f"at {doc['fetched_at']}"
        )
    if note := pointer["notification"]:
        lines.append(f"  notified   state {note['state']}, {note['documents']} documents fetched")
    lines += [f"  document   {d['object_key']} ({d['resource']})" for d in pointer["documents"]]
    return lines


def _row_text(r: dict[str, Any]) -> str:
    return (
        f"{r['id']}: {r['user_id']} {r['device_type']} {r['metric_type']} = {r['value']}"
        f"{' ' + r['unit'] if r.get('unit') else ''} at {r['timestamp']}"
        f"{' (deleted)' if r.get('deleted_at') else ''}"
    )


def render(answer: dict[str, Any]) -> str:
    """The answer as the lines `biobridge lineage` prints."""
    kind = answer["kind"]
    if kind == "row":
        row, obj = answer["row"], answer["object"]
        lines = [f"row {_row_text(row)}"]
        if obj is None:
            lines.append("  object     none recorded (a row written before Biobridge)")
        else:
            lines.append(
                f"  object     {obj['object_key']} (record {row['record_index']}), "
                f"state {obj['state']}"
            )
        lines += _headers(answer["delivery"]) + _pointer_lines(answer["pointer"])
        lines += _load_lines(answer["load"])
        lines = [x for x in lines if not x.startswith("  code ")]
        return "\n".join([*lines, f"  code       {answer['code_version']}"])
    if kind == "object":
        obj = answer["object"]
        lines = [
            f"object {obj['object_key']}: {obj['vendor']}, state {obj['state']}, "
            f"{answer['rows_total']} rows now point at it"
        ]
        lines += _headers(answer["delivery"]) + _pointer_lines(answer["pointer"])
        lines += _load_lines(answer["load"])
        lines += [f"  row        {_row_text(r)}" for r in answer["rows"]]
        if answer["rows_total"] > len(answer["rows"]):
            lines.append(f"  ... {answer['rows_total'] - len(answer['rows'])} more (--limit)")
        for q in answer["quarantine"]:
            where = "whole file" if q["record_index"] is None else f"record {q['record_index']}"
            replayed = " (replayed)" if q.get("replayed_at") else ""
            lines.append(f"  quarantine {where}: {q['reason']}{replayed}")
        if not answer["quarantine"]:
            lines.append("  quarantine none")
        return "\n".join(lines)
    load = answer["load"]
    lines = _load_lines(load)
    lines[0] = lines[0].replace("  load       ", "load ", 1)
    lines.append("  counts     " + ", ".join(f"{t} {load.get(t, 0)}" for t in LOAD_TOTALS))
    if load.get("error"):
        lines.append(f"  error      {load['error']}")
    by_state = answer["objects_by_state"]
    lines.append(
        "  objects    "
        + (", ".join(f"{n} {s}" for s, n in by_state.items()) or "none settled by this load")
    )
    lines += [
        f"  object     {o['object_key']} ({o['state']}, {o['rows_loaded'] or 0} rows)"
        for o in answer["objects"]
    ]
    if sum(by_state.values()) > len(answer["objects"]):
        lines.append(f"  ... {sum(by_state.values()) - len(answer['objects'])} more (--limit)")
    return "\n".join(lines)
