"""Quarantined records, as the stream left them on lakeFS (plain Python, no Dagster).

The stream writes each batch's invalid records under ``quarantine/events/`` of its ingest branch,
in the same commit as the valid events (``evcharging.streaming.batches``): the raw Kafka key and
value, the Kafka coordinates and every broken rule in ``reason`` (``; ``-separated). The commit's
metadata counts them (``evcharging.quarantined_rows``), so batches without any are skipped without
reading a file. A batch that is merged brings its quarantine files to main; one that is blocked keeps
them on its branch; either way its ``ingested-…`` tag still points at them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

from evcharging.audit.copies import reason_kind
from evcharging.contracts import QUARANTINE_PATH
from evcharging.lake.ingest import arrow_filesystem
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import META, TAG_PREFIX

PREVIEW_BYTES = 160  # of a raw value shown in the UI


@dataclass(frozen=True)
class BatchQuarantine:
    """One ingest batch's quarantined records: counts per reason and a few examples."""

    tag: str
    commit_id: str
    committed_at: int  # epoch seconds
    rows: int
    reasons: dict[str, int]
    examples: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def safe_preview(value: bytes | None, limit: int = PREVIEW_BYTES) -> str:
    """Raw bytes as printable ASCII: escapes for everything else (control characters, invalid UTF-8,
    markup is kept as text by the table it is shown in), cut at ``limit`` bytes with the full length."""
    if value is None:
        return "(null)"
    shown = repr(bytes(value[:limit]))[2:-1]
    return shown if len(value) <= limit else f"{shown}… ({len(value):,} bytes)"


def split_reasons(reason: str) -> list[str]:
    """The broken rules of one record (the stream joins them with ``; ``), without per-record details
    in brackets (the event ids of a conflicting reading), so that records are counted by rule."""
    return [r for r in (reason_kind(part) for part in reason.split("; ")) if r]


def quarantine_files(lakefs: LakeFSResource, commit_id: str) -> list[str]:
    """The quarantine files this commit added (against its parent, not main: main has earlier batches')."""
    repo = lakefs.repo()
    parents = repo.commit(commit_id).get_commit().parents
    changes = repo.ref(parents[0]).diff(other_ref=commit_id, prefix=f"{QUARANTINE_PATH}/") if parents else \
        repo.ref(commit_id).objects(prefix=f"{QUARANTINE_PATH}/")
    return sorted(c.path for c in changes if c.path.endswith(".parquet") and getattr(c, "type", "added") == "added")


def read_batch(lakefs: LakeFSResource, tag: str, commit, examples: int = 3) -> BatchQuarantine:
    """Read one batch's quarantine files at its commit: reasons counted, the first ``examples`` kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = quarantine_files(lakefs, commit.id)
    fs = arrow_filesystem(lakefs)
    tables = [pq.read_table(f"{lakefs.repository}/{commit.id}/{p}", filesystem=fs) for p in paths]
    table = pa.concat_tables(tables) if tables else None
    reasons: Counter[str] = Counter()
    kept: list[dict] = []
    for row in (table.to_pylist() if table is not None else []):
        reasons.update(split_reasons(row["reason"] or ""))
        if len(kept) < examples:
            kept.append({"partition": row["kafka_partition"], "offset": row["kafka_offset"],
                         "reason": row["reason"], "value": safe_preview(row["value"])})
    return BatchQuarantine(tag, commit.id, int(commit.creation_date), table.num_rows if table is not None else 0,
                           dict(reasons), kept, paths)


def quarantined_batches(lakefs: LakeFSResource, stream: str, after: str | None) -> tuple[list[BatchQuarantine], str | None]:
    """Every ingest batch of ``stream`` after tag ``after`` that quarantined records; and the last tag seen."""
    found, last = [], after
    for tag in lakefs.repo().tags(prefix=f"{TAG_PREFIX}{stream}-", after=after or None):
        commit = tag.get_commit()
        if int((commit.metadata or {}).get(f"{META}quarantined_rows", 0)):
            found.append(read_batch(lakefs, tag.id, commit))
        last = tag.id
    return found, last


def objects_url(lakefs: LakeFSResource, commit_id: str) -> str:
    """The lakeFS UI's object browser at the batch's commit, in its quarantine folder."""
    return (f"{lakefs.endpoint.rstrip('/')}/repositories/{lakefs.repository}/objects"
            f"?ref={commit_id}&path={quote(QUARANTINE_PATH + '/')}")


@dataclass(frozen=True)
class QuarantineSummary:
    """Everything one stream quarantined so far: carried from one materialization to the next, so
    each reads only the batches committed since the previous one."""

    stream: str
    last_tag: str | None = None
    rows: int = 0
    rows_by_reason: dict[str, int] = field(default_factory=dict)  # a record breaking two rules counts in both
    batches: list[dict] = field(default_factory=list)  # per batch with quarantined records, newest last
    examples: list[dict] = field(default_factory=list)  # a few records of the newest such batches

    KEEP_BATCHES = 50  # per-batch rows kept (the totals keep counting past them)
    KEEP_EXAMPLES = 6

    def batch_name(self, tag: str) -> str:
        return tag.removeprefix(f"{TAG_PREFIX}{self.stream}-")

    def add(self, new: list[BatchQuarantine], last_tag: str | None, lakefs: LakeFSResource) -> QuarantineSummary:
        reasons = Counter(self.rows_by_reason)
        for batch in new:
            reasons.update(batch.reasons)
        rows = [{"batch": self.batch_name(b.tag), "committed_at": b.committed_at, "rows": b.rows,
                 "reasons": "; ".join(sorted(b.reasons)), "lakefs": objects_url(lakefs, b.commit_id)} for b in new]
        examples = [{"batch": self.batch_name(b.tag), **e} for b in new for e in b.examples]
        return QuarantineSummary(self.stream, last_tag, self.rows + sum(b.rows for b in new),
                                 dict(reasons.most_common()), (self.batches + rows)[-self.KEEP_BATCHES:],
                                 (self.examples + examples)[-self.KEEP_EXAMPLES:])

    def to_dict(self) -> dict:
        return {"stream": self.stream, "last_tag": self.last_tag, "rows": self.rows,
                "rows_by_reason": self.rows_by_reason, "batches": self.batches, "examples": self.examples}

    @classmethod
    def from_dict(cls, raw: dict | None, stream: str) -> QuarantineSummary:
        raw = raw or {}
        if raw.get("stream") != stream:  # another stream's history (the setting changed): start over
            return cls(stream)
        return cls(stream, raw.get("last_tag"), raw.get("rows", 0), raw.get("rows_by_reason", {}),
                   raw.get("batches", []), raw.get("examples", []))
