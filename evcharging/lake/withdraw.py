"""Take rows out of an ingest batch before it is published (plain Python, no Dagster).

Exact copies of events are dropped; conflicts, and the offending rows of a batch an operator
publishes without them, move to the batch's quarantine with their reason. Both happen on the
batch's own branch, in one commit on top of the stream's, so main only ever receives the rows that
remain and the branch's history says what was taken out and why.

The rewrite starts from the files of the stream's commit and is idempotent: uncommitted leftovers
of an interrupted attempt are reset first, and a branch whose head already records this rewrite —
the same rows taken out for the same reasons — is left alone. An earlier rewrite that took out other
rows (an attempt killed before its merge, then re-run with another config or after the reference
data was fixed) is not reused: the files it changed are written again from the stream's commit.
"""

from __future__ import annotations

import hashlib
import io
import json

import pandas as pd

from evcharging.contracts import FIELDS, QUARANTINE_PATH, RESCUED_COLUMN
from evcharging.lake.ingest import AUDIT, IngestCommit, arrow_filesystem
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import META

WITHDRAWN_FROM = f"{AUDIT}withdrawn_from"  # the stream's commit the rewrite started from
WITHDRAWAL = f"{AUDIT}withdrawal"  # which rows it took out, and why (a digest)


def _coordinates(partition, offset):
    """One int64 per Kafka record: partition and offset packed (offsets stay below 2**40)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.add(pc.multiply(pc.cast(partition, pa.int64()), 1 << 40), pc.cast(offset, pa.int64()))


def event_json(row: pd.Series) -> bytes:
    """A lake row back as the event's JSON (contract fields, then what was rescued)."""
    from simulator.events import format_event_time

    event = {}
    for f in FIELDS:
        value = row.get(f.name)
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            event[f.name] = None
        elif f.kind == "timestamp":
            event[f.name] = format_event_time(pd.Timestamp(value).value // 1_000_000)  # ns → ms since the epoch
        else:
            event[f.name] = value.item() if hasattr(value, "item") else value
    rescued = row.get(RESCUED_COLUMN)
    if isinstance(rescued, str):
        event |= json.loads(rescued)
    return json.dumps(event, separators=(",", ":")).encode()


def quarantine_table(rows: pd.DataFrame, reasons: pd.Series, topic: str):
    """``rows`` of the lake with their ``reasons``, in the stream's quarantine layout."""
    import pyarrow as pa

    return pa.table({
        "key": pa.array([str(s).encode() for s in rows["session_id"]], pa.binary()),
        "value": pa.array([event_json(r) for _, r in rows.iterrows()], pa.binary()),
        "kafka_topic": pa.array([topic] * len(rows), pa.string()),
        "kafka_partition": pa.array(rows["kafka_partition"].astype("int32"), pa.int32()),
        "kafka_offset": pa.array(rows["kafka_offset"].astype("int64"), pa.int64()),
        "kafka_timestamp": pa.nulls(len(rows), pa.timestamp("us", tz="UTC")),
        "reason": pa.array(reasons.loc[rows.index].astype(str), pa.string()),
    })


def _parquet_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    # INT96 like Spark, so a rewritten file reads as the stream's own in every engine.
    pq.write_table(table, buffer, use_deprecated_int96_timestamps=True)
    return buffer.getvalue()


def withdrawal_digest(gone: pd.DataFrame, quarantined: pd.Series) -> str:
    """A digest of the rows taken out (their Kafka coordinates) and why (a reason, or an exact copy)."""
    reasons = quarantined.reindex(gone.index).fillna("exact copy").astype(str)
    rows = sorted(zip(gone["kafka_partition"].astype(int), gone["kafka_offset"].astype(int), reasons))
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:24]


def withdraw_rows(lakefs: LakeFSResource, commit: IngestCommit, paths: list[str], events: pd.DataFrame,
                  dropped: pd.Index, quarantined: pd.Series, message: str, metadata: dict[str, str]) -> str:
    """Rewrite the batch's event ``paths`` (of ``commit``) on its branch without the rows of ``events``
    labelled ``dropped`` or in ``quarantined`` (label → reason); the latter are written to the
    quarantine. Commits with ``message`` and ``metadata``; returns the branch's head commit."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    repo = lakefs.repo()
    branch = repo.branch(commit.branch)
    branch.reset_changes()
    gone = events.loc[dropped.union(quarantined.index)]
    digest = withdrawal_digest(gone, quarantined)
    head = branch.get_commit()
    if (head.metadata or {}).get(WITHDRAWN_FROM) == commit.commit_id and head.metadata.get(WITHDRAWAL) == digest:
        return head.id
    # Paths an earlier rewrite changed on the branch: each is written again to what this one keeps.
    changed = {c.path for c in repo.ref(commit.commit_id).diff(other_ref=head.id)} if head.id != commit.commit_id else set()
    remove = pa.array(_coordinates(pa.array(gone["kafka_partition"]), pa.array(gone["kafka_offset"])))
    fs = arrow_filesystem(lakefs)
    for path in paths:
        table = pq.read_table(f"{lakefs.repository}/{commit.commit_id}/{path}", filesystem=fs)
        keep = pc.invert(pc.is_in(_coordinates(table["kafka_partition"], table["kafka_offset"]), value_set=remove))
        kept = table.filter(keep)
        if kept.num_rows == table.num_rows and path not in changed:
            continue
        if kept.num_rows:
            branch.object(path).upload(data=_parquet_bytes(kept), mode="wb")
        elif path not in changed or _exists(branch, path):
            branch.object(path).delete()
    audit_file = f"{QUARANTINE_PATH}/part-audit-{commit.commit_id[:16]}.parquet"
    if len(quarantined):
        rows = events.loc[quarantined.index]
        table = quarantine_table(rows, quarantined, commit.metadata.get(f"{META}kafka_topic", ""))
        branch.object(audit_file).upload(data=_parquet_bytes(table), mode="wb")
    elif audit_file in changed:
        branch.object(audit_file).delete()
    return branch.commit(message=message, metadata={**metadata, WITHDRAWN_FROM: commit.commit_id, WITHDRAWAL: digest},
                         allow_empty=True).get_commit().id


def _exists(branch, path: str) -> bool:
    return any(o.path == path for o in branch.objects(prefix=path))
