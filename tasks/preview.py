"""A replay's dry run: do the whole replay in one transaction, count what it changed, roll back.

Nothing is predicted by a second implementation: the requeue, the claims, the reads, the
flattening and every write statement of the load (`tasks.load.write_batch`) run for real, so the
counts are what the replay would do, and the rollback leaves the database as it was (but for
the empty month partitions the replay needs, created and committed as a load creates them). The
transaction holds the upsert lock from its first batch to the rollback, so loads wait for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from landing.store import ObjectStore
from schemas.loads import LoadCounts
from tasks.batch import BatchSpec, fetch_within_budget, plan_batch
from tasks.load import MetricChanges, RowChanges, ensure_partitions, stage_batch, write_batch
from warehouse.ledger import claim_pending, requeue, start_load
from warehouse.postgres import Connection, Dsn


@dataclass
class ReplayPreview:
    """What a replay would do: files requeued, the load's counts, row changes per metric."""

    files_requeued: int = 0
    counts: LoadCounts = field(default_factory=LoadCounts)
    changes: RowChanges = field(default_factory=dict)


def preview_replay(
    conn: Connection,
    store: ObjectStore,
    *,
    spec: BatchSpec,
    states: Sequence[str],
    code_version: str,
    url: Dsn,
) -> ReplayPreview:
    """Run the replay of `spec`'s window in this connection's transaction and roll it back."""
    preview = ReplayPreview()
    changes: RowChanges = defaultdict(MetricChanges)
    try:
        load_id = start_load(
            conn, flow_run_id=None, kind="replay", code_version=code_version, commit=False
        )
        preview.files_requeued = requeue(
            conn,
            load_id=load_id,
            vendors=spec.vendors,
            states=states,
            received_from=spec.received_from,
            received_until=spec.received_until,
            commit=False,
        )
        while claimed := claim_pending(
            conn,
            limit=spec.limit,
            vendors=spec.vendors,
            received_from=spec.received_from,
            received_until=spec.received_until,
        ):
            files = fetch_within_budget(
                store,
                claimed.keys,
                max_bytes=spec.max_bytes,
                alone_bytes=spec.alone_bytes,
            )
            plan = plan_batch(files, load_id=load_id, delivery_order=claimed.order)
            ensure_partitions(url, plan.stage)  # empty month partitions: kept, harmless
            stage_batch(
                conn, stage=plan.stage, quarantine=plan.quarantine, file_results=plan.file_results
            )
            plan.counts.rows_staged = plan.stage.num_rows
            written = write_batch(
                conn,
                load_id=load_id,
                counts=plan.counts,
                reloaded=[f.key for f in files if f.key in claimed.loaded_before],
                by_metric=True,
            )
            for metric, change in written.items():
                changes[metric].add(change)
            preview.counts.add(plan.counts)
    finally:
        conn.rollback()
    preview.changes = dict(sorted(changes.items()))
    return preview
