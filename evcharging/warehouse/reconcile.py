"""Reconciliation from recorded counts: each simulator run's manifest against the warehouse, and the
chain Kafka → lake → warehouse load by load.

Nothing here re-reads the events topic or the lake, so it costs the same on the thousandth run as
on the first and stays right after Kafka's retention deleted old segments:

* **per load** (``load_log``, written by each warehouse load from the merge commits it spans, see
  :mod:`evcharging.warehouse.lineage`): the Kafka records its batches consumed are all accounted
  for (events + quarantined + copies dropped), and the warehouse loaded exactly the events those
  batches published;
* **per Kafka partition**, over all loads: no offset published twice; offsets not yet published
  (a batch still waiting or blocked) leave the runs after them *in flight*, not lost;
* **per run**: the manifest's counts per event type (rows and distinct event ids) and completed
  sessions against the ClickHouse facts. A deficit is *in flight* while main has not contiguously
  reached the run's last offsets (the manifest records them) — for sessions, also while loads wait
  for the sessions lane to summarise them — else a loss; any excess is a double.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from evcharging.warehouse.lineage import contiguous_end, holes, overlaps, union_ranges
from simulator.events import EVENT_TYPES, RunManifest

__all__ = [
    "Difference", "Reconciliation", "StageCounts", "caught_up", "latest_manifests", "reconcile",
    "recorded_stage", "warehouse_stage",
]  # fmt: skip


@dataclass
class StageCounts:
    """The warehouse's counts for one run."""

    rows: dict[str, int] = field(default_factory=dict)  # event type -> rows
    distinct: dict[str, int] = field(default_factory=dict)  # event type -> distinct event ids
    sessions_completed: int = 0  # distinct sessions in fact_charging_sessions
    session_rows: int = 0  # rows of fact_charging_sessions

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class Difference:
    subject: str  # "run <id>", "load <commit>" or "kafka <topic:partition>"
    measure: str
    expected: int
    actual: int
    in_flight: bool = False
    why: str = "main has not reached this run's last Kafka offsets yet"  # what it waits for, when in flight

    def __str__(self) -> str:
        note = f" (in flight: {self.why})" if self.in_flight else ""
        return f"{self.subject}: {self.measure} = {self.actual}, expected {self.expected}{note}"


@dataclass
class Reconciliation:
    runs: list[dict]
    differences: list[Difference]
    runs_without_manifest: list[str]
    loads: int = 0
    unpublished: dict[str, list[list[int]]] = field(default_factory=dict)  # offsets not (yet) on main
    ranges: dict[str, list[list[int]]] = field(default_factory=dict)  # every offset published, joined

    @property
    def passed(self) -> bool:
        return not self.differences

    @property
    def only_in_flight(self) -> bool:
        return bool(self.differences) and all(d.in_flight for d in self.differences)

    def markdown(self) -> str:
        from evcharging.warehouse.tables import markdown_table

        cols = ["run_id", "status", "manifest events", "warehouse events", "manifest sessions",
                "warehouse sessions", "main reached its offsets"]
        table = markdown_table(cols, [[r.get(c, "") for c in cols] for r in self.runs])
        if self.unpublished:
            table += "\n**Kafka offsets not on main yet** (batches waiting or blocked): " + ", ".join(
                f"{k} {lo}–{hi - 1}" for k, spans in self.unpublished.items() for lo, hi in spans[:5]) + "\n"
        if self.differences:
            table += "\n**Differences**\n\n" + "".join(f"- {d}\n" for d in self.differences[:50])
        return table


def _run_difference(run_id: str, measure: str, want: int, got: int, reached: bool, unsessionized: int) -> Difference:
    subject, name = f"run {run_id}", f"warehouse {measure}"
    if got < want and not reached:
        return Difference(subject, name, want, got, in_flight=True)
    if got < want and measure in _SESSION_MEASURES and unsessionized:
        return Difference(subject, name, want, got, in_flight=True,
                          why=f"the sessions of {unsessionized} loads are not summarised yet")
    return Difference(subject, name, want, got)


def _expected(m: RunManifest) -> dict[str, int]:
    out = {}
    for t in EVENT_TYPES:
        out[f"{t} events"] = out[f"{t} distinct event ids"] = int(m.counts.get(t, 0))
    out["events_total"] = int(m.events_total)
    out["sessions_completed"] = out["session rows"] = int(m.sessions_completed)
    return out


def _actual(c: StageCounts) -> dict[str, int]:
    out = {}
    for t in EVENT_TYPES:
        out[f"{t} events"], out[f"{t} distinct event ids"] = c.rows.get(t, 0), c.distinct.get(t, 0)
    out["events_total"] = c.total
    out["sessions_completed"], out["session rows"] = c.sessions_completed, c.session_rows
    return out


def _load_differences(loads) -> list[Difference]:
    """Per load: Kafka records all accounted for, and the warehouse loaded what the lake published."""
    out = []
    for load in loads:
        subject = f"load {load.commit[:12]}"
        accounted = load.lake_events + load.quarantined + load.dropped
        if load.kafka_records != accounted:
            out.append(Difference(subject, "Kafka records consumed vs events + quarantined + dropped copies",
                                  load.kafka_records, accounted))
        if load.events_loaded != load.lake_events:
            out.append(Difference(subject, "events loaded into ClickHouse vs events its batches published",
                                  load.lake_events, load.events_loaded))
    return out


def caught_up(manifests: dict[str, RunManifest], ranges: dict, events_topic: str) -> dict[str, bool]:
    """Per run: has main contiguously consumed every partition past the run's last event?"""
    return {run: all(contiguous_end(ranges.get(f"{events_topic}:{p}", [])) > int(o)
                     for p, o in m.kafka_last_offsets.items())
            for run, m in manifests.items()}


_SESSION_MEASURES = ("sessions_completed", "session rows")


def reconcile(manifests: dict[str, RunManifest], warehouse: dict[str, StageCounts], loads, events_topic: str,
              earlier: dict | None = None, unsessionized_loads: int = 0) -> Reconciliation:
    """Compare every run's manifest with the warehouse, and check each load's chain (see the module
    docstring). ``loads``: :class:`evcharging.warehouse.load.LoadReport` rows of ``load_log``;
    ``earlier``: the offsets the loads reconciled before published (their joined ranges), so that a
    reconciliation can take only the loads since the last one; ``unsessionized_loads``: loads whose
    sessions the sessions lane has not summarised yet (a sessions deficit is in flight meanwhile)."""
    ranges = union_ranges(earlier or {}, *(json.loads(load.kafka_ranges) for load in loads))
    differences = _load_differences(loads)
    for key, spans in overlaps(ranges).items():
        differences.append(Difference(f"kafka {key}", f"offsets published twice {spans[:3]}", 0,
                                      sum(hi - lo for lo, hi in spans)))
    reached = caught_up(manifests, ranges, events_topic)
    summary = []
    for run_id in sorted(manifests):
        want, got = _expected(manifests[run_id]), _actual(warehouse.get(run_id, StageCounts()))
        run_diffs = [_run_difference(run_id, measure, want[measure], got[measure], reached[run_id], unsessionized_loads)
                     for measure in want if got[measure] != want[measure]]
        differences += run_diffs
        summary.append({
            "run_id": run_id, "manifest events": want["events_total"], "warehouse events": got["events_total"],
            "manifest sessions": want["sessions_completed"], "warehouse sessions": got["sessions_completed"],
            "main reached its offsets": "yes" if reached[run_id] else "not yet",
            "status": "exact" if not run_diffs else "in flight" if all(d.in_flight for d in run_diffs) else "MISMATCH"})
    return Reconciliation(summary, differences, sorted(set(warehouse) - set(manifests)), loads=len(loads),
                          unpublished=holes(ranges), ranges=ranges)


# --- what is recorded ------------------------------------------------------------------------------

async def latest_manifests(bootstrap_servers: str, topic: str, timeout_s: float = 30) -> dict[str, RunManifest]:
    """The newest manifest per run from the manifests topic (keyed and compacted by run id: a re-sent
    run's manifest replaces the first). Reads from the start to the end offsets seen on opening."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=int(timeout_s * 1000))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(bootstrap_servers, topic)]
        if not partitions:
            raise RuntimeError(f"Kafka topic {topic!r} (EVCHARGING_KAFKA_MANIFESTS_TOPIC) does not exist")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        manifests: dict[str, RunManifest] = {}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        async with asyncio.timeout(timeout_s):
            while remaining:
                for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                    for record in records:
                        if record.value:
                            manifest = RunManifest.from_json(record.value)
                            manifests[manifest.run_id] = manifest
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        return manifests
    finally:
        await consumer.stop()


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in described.get("partitions", []))
    finally:
        await admin.close()


def _stage(wh, events_sql: str, sessions_sql: str) -> dict[str, StageCounts]:
    """Counts per run from ``events_sql`` (run, event type, rows, distinct ids) and ``sessions_sql``
    (run, session rows, distinct sessions)."""
    counts: dict[str, StageCounts] = defaultdict(StageCounts)
    for run, kind, rows, distinct in wh.query_rows(events_sql):
        counts[run].rows[kind] = int(rows)
        counts[run].distinct[kind] = int(distinct)
    for run, rows, distinct in wh.query_rows(sessions_sql):
        counts[run].session_rows, counts[run].sessions_completed = int(rows), int(distinct)
    return dict(counts)


def recorded_stage(wh, database: str, runs: set[str] | None = None) -> dict[str, StageCounts]:
    """The warehouse's counts per run as the loads and sessions passes recorded them (``load_counts``,
    ``session_counts``, both sorted by run): a few rows per load of the ``runs`` asked for (all when
    None), whatever the size of the facts. What the recurring reconciliation uses;
    :func:`warehouse_stage` counts the facts themselves (the full audit)."""
    from evcharging.warehouse.schema import qualified

    where = "1" if runs is None else "run_id IN (" + ", ".join(f"'{r}'" for r in sorted(runs)) + ")"
    if runs is not None and not runs:
        return {}
    return _stage(wh, f"SELECT run_id, event_type, sum(events), sum(distinct_events) "
                      f"FROM {qualified(database, 'load_counts')} FINAL WHERE {where} GROUP BY run_id, event_type",
                  f"SELECT run_id, sum(sessions), sum(sessions) "
                  f"FROM {qualified(database, 'session_counts')} FINAL WHERE {where} GROUP BY run_id")


def warehouse_stage(wh, database: str) -> dict[str, StageCounts]:
    """The warehouse facts' counts per run, as readers see them (``FINAL``): reads both facts whole,
    so only the full audit (``audit_warehouse``, run by a person) uses it."""
    from evcharging.warehouse.schema import qualified

    return _stage(wh, f"SELECT run_id, event_type, count(), uniqExact(event_id) "
                      f"FROM {qualified(database, 'fact_charging_events')} FINAL GROUP BY run_id, event_type",
                  f"SELECT run_id, count(), uniqExact(session_id) "
                  f"FROM {qualified(database, 'fact_charging_sessions')} FINAL GROUP BY run_id")
