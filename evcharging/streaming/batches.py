"""One micro-batch → one lakeFS ingest branch and one commit, exactly once.

Spark's checkpoint replays a batch id with the same Kafka offsets after a crash, so a batch is
recognised by its id:

* ``ingested-<stream>-<batch>`` tag exists → the batch is done (even if its branch was merged into
  main and deleted since); its recorded offsets must equal the replay's, else the checkpoint and
  the lake disagree and we stop rather than lose or double data.
* branch ``ingest-<stream>-<batch>`` exists with a commit carrying this batch id → it was committed
  but not tagged: tag it.
* branch exists without that commit → a crash mid-write: drop the branch and write it again.

The tag is the last step and is what the Dagster sensor watches, so downstream sees a batch only
once it is complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evcharging.contracts import CONTRACT_VERSION, LAKE_EVENTS_PATH, QUARANTINE_PATH
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.checkpoint import CheckpointError, CheckpointFiles
from simulator.avro import load_schemas

log = logging.getLogger("evcharging.streaming")

BRANCH_PREFIX = "ingest-"
TAG_PREFIX = "ingested-"
META = "evcharging."  # prefix of every commit-metadata key the stream writes


class BatchConflictError(RuntimeError):
    """A batch id is already committed in the lake with other Kafka offsets."""


def branch_name(stream: str, batch_id: int) -> str:
    # Zero-padded so that name order is batch order (the sensor's cursor relies on it).
    return f"{BRANCH_PREFIX}{stream}-{batch_id:010d}"


def tag_name(stream: str, batch_id: int) -> str:
    return f"{TAG_PREFIX}{stream}-{batch_id:010d}"


@dataclass(frozen=True)
class BatchCounts:
    """What the stream wrote for one batch."""

    valid: int
    quarantined: int
    event_dates: list[str]
    rescued: int = 0  # valid events with fields the contract does not know
    rescued_names: list[str] = ()


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    branch: str
    commit_id: str
    valid_rows: int
    quarantined_rows: int
    offsets: dict[str, list[int]]  # partition → [first, last + 1)
    replayed: bool = False
    rescued_rows: int = 0


def offset_ranges(records) -> dict[str, list[int]]:
    """Per Kafka partition, the half-open offset range of the records (one pass over them)."""
    from pyspark.sql import functions as F

    rows = records.groupBy("partition").agg(F.min("offset").alias("lo"), F.max("offset").alias("hi")).collect()
    return {str(r.partition): [int(r.lo), int(r.hi) + 1] for r in sorted(rows, key=lambda r: r.partition)}


def _offset_log_entry(text: str | None, topic: str) -> dict[str, int] | None:
    """Offsets of ``topic`` in one file of Spark's offset log (``v1``, [metadata], then one JSON
    line per source; the Kafka source's initial-offsets file starts with a NUL byte)."""
    if text is None:
        return None
    for line in text.lstrip("\0").splitlines()[1:]:
        entry = json.loads(line) if line.startswith("{") else {}
        if topic in entry:
            return {str(p): int(o) for p, o in entry[topic].items()}
    return None


def checkpoint_offsets(read: Callable[[str], str | None], batch_id: int, topic: str) -> dict[str, list[int]]:
    """The batch's Kafka offset ranges as Spark planned them; ``read``: a checkpoint file's text by
    relative path, None if missing (:meth:`CheckpointFiles.read_text`).

    Spark writes a batch's end offsets to ``offsets/<batch>`` before running it (its write-ahead
    log); the start is the previous batch's end, or the source's initial offsets (``sources/0/0``)
    for batch 0. Reading them costs nothing, where a min/max per partition would read the whole
    batch from Kafka a second time. Partitions without new records are left out, as in the data.
    A missing entry is an error, never a reason to guess: a second pass over Kafka could disagree
    with the replay and is no substitute for the log.
    """
    files = {"end": f"offsets/{batch_id}", "start": f"offsets/{batch_id - 1}" if batch_id > 0 else "sources/0/0"}
    entries = {name: _offset_log_entry(read(path), topic) for name, path in files.items()}
    missing = [files[name] for name, entry in entries.items() if entry is None]
    if missing:
        raise CheckpointError(f"the checkpoint's offset log has no offsets of topic {topic!r} for batch {batch_id} "
                              f"in {' and '.join(missing)}: was the checkpoint changed by hand, or written for "
                              "another topic? Use a new EVCHARGING_STREAM_NAME for a fresh checkpoint.")
    start, end = entries["start"], entries["end"]
    return {p: [start.get(p, 0), hi] for p, hi in sorted(end.items(), key=lambda kv: int(kv[0]))
            if hi > start.get(p, 0)}


def commit_metadata(stream: str, batch_id: int, topic: str, offsets: dict, valid: int, quarantined: int,
                    event_dates: list[str], rescued: int = 0, rescued_names: list[str] = ()) -> dict[str, str]:
    return {
        f"{META}stream": stream,
        f"{META}batch_id": str(batch_id),
        f"{META}kafka_topic": topic,
        f"{META}kafka_offsets": json.dumps(offsets, sort_keys=True),
        f"{META}valid_rows": str(valid),
        f"{META}quarantined_rows": str(quarantined),
        f"{META}contract_version": str(CONTRACT_VERSION),
        f"{META}event_dates": json.dumps(event_dates),
        # valid events that carried fields this contract does not know, and those fields' names
        f"{META}rescued_rows": str(rescued),
        f"{META}rescued_fields": json.dumps(sorted(rescued_names)),
    }


def _exists(ref) -> bool:
    from lakefs.exceptions import NotFoundException

    try:
        ref.get_commit()
        return True
    except NotFoundException:
        return False


class _StageClock:
    """Seconds per stage of a batch, for the log line and the stream benchmark's profile."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage], self._last = round(now - self._last, 3), now

    def __str__(self) -> str:
        return ", ".join(f"{stage} {s:.2f} s" for stage, s in self.seconds.items())


class IngestBatchWriter:
    """The ``foreachBatch`` function of the stream."""

    def __init__(self, lakefs: LakeFSResource, stream: str, topic: str, checkpoint: str | None = None,
                 avro_schemas: Mapping[int, Mapping[str, Any]] | None = None):
        """``checkpoint``: the stream's checkpoint URI; ``avro_schemas``: schema id → Avro writer
        schema (default: the repository's)."""
        self.lakefs, self.stream, self.topic = lakefs, stream, topic
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.avro_schemas = load_schemas() if avro_schemas is None else dict(avro_schemas)
        self.last_stage_seconds: dict[str, float] = {}  # of the last batch written
        self._files: CheckpointFiles | None = None

    def offsets(self, records, batch_id: int) -> dict[str, list[int]]:
        """The batch's offset ranges: from the checkpoint's offset log (read with Hadoop's
        FileSystem), or — for a DataFrame outside a stream, as in tests — from the records."""
        if self.checkpoint is None:
            return offset_ranges(records)
        if self._files is None:
            self._files = CheckpointFiles(records.sparkSession, self.checkpoint)
        return checkpoint_offsets(self._files.read_text, batch_id, self.topic)

    def __call__(self, records, batch_id: int) -> None:
        self.write(records, batch_id)

    def write(self, records, batch_id: int) -> BatchResult | None:
        repo = self.lakefs.repo()
        offsets = self.offsets(records, batch_id)
        if not offsets:
            log.info("batch %s is empty: nothing to write", batch_id)
            return None
        done = self._already_done(repo, batch_id, offsets)
        if done:
            return done
        clock = _StageClock()
        branch = repo.branch(branch_name(self.stream, batch_id))
        if _exists(branch):  # created, maybe half written, never committed: start over
            log.warning("batch %s: dropping the uncommitted branch %s left by a crash", batch_id, branch.id)
            branch.delete()
        branch.create(source_reference=self.lakefs.default_branch)
        clock.lap("branch")
        n = self._write_files(records, branch.id)
        clock.lap("files")  # Kafka read, decode, classification, Parquet write (one Spark job; two with quarantine)
        commit = branch.commit(
            message=f"ingest {self.stream} batch {batch_id}: {n.valid} events, {n.quarantined} quarantined",
            metadata=commit_metadata(self.stream, batch_id, self.topic, offsets, n.valid, n.quarantined, n.event_dates,
                                     n.rescued, n.rescued_names))
        commit_id = commit.get_commit().id
        clock.lap("commit")
        repo.tag(tag_name(self.stream, batch_id)).create(commit_id)
        clock.lap("tag")
        self.last_stage_seconds = clock.seconds
        log.info("batch %s → %s@%s: %s valid (%s with rescued fields), %s quarantined (%s)", batch_id, branch.id,
                 commit_id[:12], n.valid, n.rescued, n.quarantined, clock)
        return BatchResult(batch_id, branch.id, commit_id, n.valid, n.quarantined, offsets, rescued_rows=n.rescued)

    def _already_done(self, repo, batch_id: int, offsets: dict) -> BatchResult | None:
        """The batch's earlier result if it is already committed (checked against the replay's offsets)."""
        tag = repo.tag(tag_name(self.stream, batch_id))
        if _exists(tag):
            commit = tag.get_commit()
        else:
            branch = repo.branch(branch_name(self.stream, batch_id))
            if not _exists(branch):
                return None
            commit = branch.get_commit()
            if commit.metadata.get(f"{META}batch_id") != str(batch_id):
                return None
            tag.create(commit.id)  # committed, then crashed before tagging
        recorded = json.loads(commit.metadata[f"{META}kafka_offsets"])
        if recorded != offsets:
            raise BatchConflictError(
                f"batch {batch_id} of stream {self.stream!r} is already in lakeFS (commit {commit.id[:12]}) with "
                f"Kafka offsets {recorded}, but the checkpoint replays {offsets}: was the checkpoint reset? "
                "Use a new EVCHARGING_STREAM_NAME for a fresh checkpoint.")
        log.info("batch %s was already committed as %s: replay skipped", batch_id, commit.id[:12])
        return BatchResult(batch_id, branch_name(self.stream, batch_id), commit.id,
                           int(commit.metadata[f"{META}valid_rows"]), int(commit.metadata[f"{META}quarantined_rows"]),
                           offsets, replayed=True, rescued_rows=int(commit.metadata.get(f"{META}rescued_rows", 0)))

    def _write_files(self, records, branch: str) -> BatchCounts:
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        from evcharging.contracts import RESCUED_COLUMN
        from evcharging.transforms.ingest import classify_records, quarantine_rows, valid_events

        # One pass: the valid events are written while an Observation counts both kinds and
        # collects the dates. Quarantined records are rare, so only a batch with some pays for a
        # second pass (classification is deterministic: the same records get the same reasons).
        stats = Observation(f"batch-{branch}")
        valid_row = F.col("reason").isNull()
        rescued = F.when(valid_row, F.col(RESCUED_COLUMN))
        classified = classify_records(records, self.avro_schemas).observe(
            stats,
            F.count(F.when(valid_row, 1)).alias("valid"),
            F.count("reason").alias("quarantined"),
            F.collect_set(F.when(valid_row, F.to_date("event.event_time"))).alias("dates"),
            F.count(rescued).alias("rescued"),
            F.array_distinct(F.flatten(F.collect_set(F.json_object_keys(rescued)))).alias("rescued_names"))
        valid_events(classified).write.mode("append").partitionBy("event_date").parquet(
            self.lakefs.s3a_uri(branch, LAKE_EVENTS_PATH))
        counts = stats.get
        result = BatchCounts(int(counts["valid"]), int(counts["quarantined"]), sorted(str(d) for d in counts["dates"]),
                             int(counts["rescued"]), sorted(counts["rescued_names"] or []))
        if result.quarantined:
            quarantine_rows(classify_records(records, self.avro_schemas)).write.mode("append").parquet(
                self.lakefs.s3a_uri(branch, QUARANTINE_PATH))
        return result
