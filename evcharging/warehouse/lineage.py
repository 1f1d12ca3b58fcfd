"""Which ingest batches a load of ``main`` brought in, and what their merge commits recorded.

Every publish merges one ingest batch into main with the stream's metadata (its Kafka offset
ranges and row counts; see ``evcharging.streaming.batches.commit_metadata``). A load from commit A
to commit B therefore knows, without reading any data, which Kafka records it accounts for. The
load records that in ``load_log``, and reconciliation checks the chain Kafka → lake → warehouse
from those records alone: no re-read of the topic (whose early segments retention deletes) or of
the lake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from evcharging.lake.ingest import AUDIT
from evcharging.streaming.batches import META

Ranges = dict[str, list[list[int]]]  # "topic:partition" -> half-open offset ranges [lo, hi)


@dataclass(frozen=True)
class MergedBatch:
    """One ingest batch as its merge commit into main recorded it."""

    branch: str
    merge_commit: str
    ranges: Ranges
    valid_rows: int  # events it published on main
    quarantined_rows: int  # by the stream, and by the publish (conflicts, rows an operator withdrew)
    dropped_rows: int  # records the publish dropped as copies of events or readings already kept

    @property
    def kafka_records(self) -> int:
        return sum(hi - lo for spans in self.ranges.values() for lo, hi in spans)


def merged_batch(commit_id: str, metadata: dict[str, str]) -> MergedBatch | None:
    """The batch a merge commit published, or None for any other commit.

    The stream recorded its valid and quarantined records; the publish, what it did with the valid
    ones: the rows it published, exact copies and re-sent readings it dropped, conflicts (by event id
    and by reading) and (by operator action) offending rows it moved to quarantine."""
    branch = metadata.get(f"{META}ingest_branch")
    if not branch:
        return None
    topic = metadata.get(f"{META}kafka_topic", "")
    offsets = json.loads(metadata.get(f"{META}kafka_offsets", "{}"))
    audit = lambda key, default=0: int(metadata.get(f"{AUDIT}{key}", default))  # noqa: E731
    return MergedBatch(
        branch=branch, merge_commit=commit_id,
        ranges={f"{topic}:{p}": [[int(lo), int(hi)]] for p, (lo, hi) in offsets.items()},
        valid_rows=audit("published_rows", metadata.get(f"{META}valid_rows", 0)),
        quarantined_rows=int(metadata.get(f"{META}quarantined_rows", 0)) + audit("conflicts_quarantined")
        + audit("reading_conflicts_quarantined") + audit("withdrawn_rows"),
        dropped_rows=audit("duplicates_dropped") + audit("resent_readings_dropped"))


def merged_batches(repo, since: str | None, until: str) -> list[MergedBatch]:
    """The batches merged into main after commit ``since`` up to ``until``, oldest first (the
    first-parent history of main: one merge commit per publish)."""
    kwargs = {"first_parent": True, **({"stop_at": since} if since else {})}
    batches = []
    for commit in repo.ref(until).log(**kwargs):
        if commit.id == since:
            break
        batch = merged_batch(commit.id, dict(commit.metadata or {}))
        if batch:
            batches.append(batch)
    return batches[::-1]


def union_ranges(*many: Ranges) -> Ranges:
    """The ranges of all arguments, sorted per partition, adjacent ones joined (overlaps kept apart,
    so that :func:`overlaps` still sees them)."""
    merged: Ranges = {}
    for ranges in many:
        for key, spans in ranges.items():
            merged.setdefault(key, []).extend([int(lo), int(hi)] for lo, hi in spans)
    out: Ranges = {}
    for key, spans in merged.items():
        joined: list[list[int]] = []
        for lo, hi in sorted(spans):
            if joined and lo == joined[-1][1]:
                joined[-1][1] = hi
            else:
                joined.append([lo, hi])
        out[key] = joined
    return out


def overlaps(ranges: Ranges) -> dict[str, list[list[int]]]:
    """Per partition, offsets covered twice: a batch's records published twice."""
    found = {}
    for key, spans in ranges.items():
        twice = [[lo, min(hi, prev_hi)] for (_, prev_hi), (lo, hi) in zip(spans, spans[1:]) if lo < prev_hi]
        if twice:
            found[key] = twice
    return found


def holes(ranges: Ranges) -> dict[str, list[list[int]]]:
    """Per partition, offsets between published ranges: batches not (yet) on main."""
    found = {}
    for key, spans in ranges.items():
        gaps = [[prev_hi, lo] for (_, prev_hi), (lo, _) in zip(spans, spans[1:]) if lo > prev_hi]
        if gaps:
            found[key] = gaps
    return found


def contiguous_end(spans: list[list[int]]) -> int:
    """The end of the first contiguous stretch: every record before it is on main (counting from the
    first one the stream read; retention may have deleted earlier ones before it started)."""
    return spans[0][1] if spans else -1
