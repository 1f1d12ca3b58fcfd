"""Reconciliation: per simulator run, the run manifest's counts against Kafka, lakeFS and ClickHouse.

Each stage is counted independently, per run and event type, as rows *and* distinct event ids (a
doubled event shows as rows > distinct, a lost one as fewer than the manifest), plus completed
sessions. :func:`reconcile` compares them with the manifest; any difference is reported.

A run may still be on its way: the lake is counted at the commit the warehouse last loaded, and a
lake deficit counts as *in flight* (not a loss) while that commit has not yet reached the run's last
Kafka offset in some partition (its position there = the highest offset among its events and
quarantined records). Everything else — a Kafka count off the manifest, any excess, a deficit after
the lake has passed the run's offsets, the warehouse differing from a lake that has everything — is
a mismatch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from simulator.events import EVENT_TYPES, RunManifest

__all__ = [
    "Difference", "Reconciliation", "StageCounts", "count_events", "kafka_stage", "lake_stage",
    "latest_manifests", "reconcile", "warehouse_stage",
]  # fmt: skip

STAGES = ("kafka", "lake", "warehouse")


@dataclass
class StageCounts:
    """One stage's counts for one run."""

    rows: dict[str, int] = field(default_factory=dict)  # event type -> rows
    distinct: dict[str, int] = field(default_factory=dict)  # event type -> distinct event ids
    sessions_completed: int = 0  # distinct sessions with a session_ended event (warehouse: fact rows)
    session_rows: int | None = None  # warehouse only: rows of fact_charging_sessions

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class Difference:
    run_id: str
    stage: str
    measure: str
    expected: int
    actual: int
    in_flight: bool = False

    def __str__(self) -> str:
        note = " (in flight: the lake has not reached this run's Kafka offsets yet)" if self.in_flight else ""
        return f"run {self.run_id}: {self.stage} {self.measure} = {self.actual}, manifest says {self.expected}{note}"


@dataclass
class Reconciliation:
    runs: list[dict]
    differences: list[Difference]
    runs_without_manifest: list[str]

    @property
    def passed(self) -> bool:
        return not self.differences

    @property
    def only_in_flight(self) -> bool:
        return bool(self.differences) and all(d.in_flight for d in self.differences)

    def markdown(self) -> str:
        from evcharging.warehouse.tables import markdown_table

        cols = ["run_id", "status", "manifest events", *[f"{s} events" for s in STAGES],
                "manifest sessions", *[f"{s} sessions" for s in STAGES]]
        table = markdown_table(cols, [[r[c] for c in cols] for r in self.runs])
        if self.differences:
            table += "\n**Differences**\n\n" + "".join(f"- {d}\n" for d in self.differences[:50])
        return table


def _measures(m: RunManifest) -> dict[str, int]:
    """What the manifest says, per measure."""
    out = {f"{t} events": int(m.counts.get(t, 0)) for t in EVENT_TYPES}
    out["events_total"] = int(m.events_total)
    out["sessions_completed"] = int(m.sessions_completed)
    return out


def _stage_measures(c: StageCounts) -> dict[str, int]:
    out = {}
    for t in EVENT_TYPES:
        out[f"{t} events"] = c.rows.get(t, 0)
        out[f"{t} distinct event ids"] = c.distinct.get(t, 0)
    out["events_total"] = c.total
    out["sessions_completed"] = c.sessions_completed
    if c.session_rows is not None:
        out["session rows"] = c.session_rows
    return out


def _expected_for(measure: str, expected: dict[str, int]) -> int:
    if measure.endswith(" distinct event ids"):
        return expected[measure.replace(" distinct event ids", " events")]
    if measure == "session rows":
        return expected["sessions_completed"]
    return expected[measure]


def reconcile(manifests: dict[str, RunManifest], stages: dict[str, dict[str, StageCounts]],
              lake_caught_up: dict[str, bool] | None = None) -> Reconciliation:
    """Compare each run's manifest with every stage's counts (``stages[stage][run_id]``).

    ``lake_caught_up[run_id]`` says whether the lake (as the warehouse last loaded it) has passed the
    run's last Kafka offsets; a deficit downstream of Kafka is in flight while it has not. Runs
    missing from it count as caught up (strict).
    """
    lake_caught_up = lake_caught_up or {}
    differences: list[Difference] = []
    summary: list[dict] = []
    for run_id in sorted(manifests):
        expected = _measures(manifests[run_id])
        row = {"run_id": run_id, "manifest events": expected["events_total"],
               "manifest sessions": expected["sessions_completed"]}
        run_diffs: list[Difference] = []
        for stage in STAGES:
            counts = stages.get(stage, {}).get(run_id, StageCounts())
            row[f"{stage} events"] = counts.total
            row[f"{stage} sessions"] = counts.sessions_completed
            for measure, actual in _stage_measures(counts).items():
                want = _expected_for(measure, expected)
                if actual != want:
                    in_flight = stage != "kafka" and actual < want and not lake_caught_up.get(run_id, True)
                    run_diffs.append(Difference(run_id, stage, measure, want, actual, in_flight))
        row["status"] = ("exact" if not run_diffs else
                         "in flight" if all(d.in_flight for d in run_diffs) else "MISMATCH")
        differences += run_diffs
        summary.append(row)
    seen = {run for per_run in stages.values() for run in per_run}
    return Reconciliation(summary, differences, sorted(seen - set(manifests)))


# --- counting each stage -------------------------------------------------------------------------

def count_events(df) -> tuple[dict[str, StageCounts], dict[str, dict[int, int]]]:
    """Spark rows with run_id, event_type, event_id, session_id, partition, offset → per run: counts,
    and the highest Kafka offset per partition."""
    from pyspark.sql import functions as F

    per_type = (df.groupBy("run_id", "event_type")
                .agg(F.count(F.lit(1)).alias("rows"), F.count_distinct("event_id").alias("distinct")).collect())
    sessions = (df.where(F.col("event_type") == "session_ended").groupBy("run_id")
                .agg(F.count_distinct("session_id").alias("sessions")).collect())
    offsets = df.groupBy("run_id", "partition").agg(F.max("offset").alias("offset")).collect()
    counts: dict[str, StageCounts] = defaultdict(StageCounts)
    for r in per_type:
        counts[r.run_id].rows[r.event_type] = int(r.rows)
        counts[r.run_id].distinct[r.event_type] = int(r.distinct)
    for r in sessions:
        counts[r.run_id].sessions_completed = int(r.sessions)
    last: dict[str, dict[int, int]] = defaultdict(dict)
    for r in offsets:
        last[r.run_id][int(r.partition)] = int(r.offset)
    return dict(counts), dict(last)


def _kafka_frame(spark, bootstrap: str, topic: str):
    return (spark.read.format("kafka").option("kafka.bootstrap.servers", bootstrap).option("subscribe", topic)
            .option("startingOffsets", "earliest").option("endingOffsets", "latest").load())


def kafka_stage(spark, bootstrap: str, topic: str):
    """Counts of the events topic as produced (each record parsed for its run, type, id, session)."""
    from pyspark.sql import functions as F

    raw = _kafka_frame(spark, bootstrap, topic)
    value = F.col("value").cast("string")
    df = raw.select(*[F.get_json_object(value, f"$.{k}").alias(k) for k in ("run_id", "event_type", "event_id",
                                                                           "session_id")],
                    "partition", "offset")
    return count_events(df.where(F.col("run_id").isNotNull()))


def latest_manifests(spark, bootstrap: str, topic: str) -> dict[str, RunManifest]:
    """The newest manifest per run (the topic is keyed by run_id; a rerun's manifest replaces one)."""
    from pyspark.sql import functions as F

    raw = _kafka_frame(spark, bootstrap, topic)
    rows = (raw.select(F.col("key").cast("string").alias("k"), F.col("value").cast("string").alias("v"),
                       F.struct("timestamp", "partition", "offset").alias("pos"))
            .groupBy("k").agg(F.max_by("v", "pos").alias("v")).collect())
    manifests = {}
    for r in rows:
        if r.v:
            m = RunManifest.from_json(r.v)
            manifests[m.run_id] = m
    return manifests


def lake_stage(spark, lakefs, ref: str):
    """Counts of the lake's events at ``ref``, and its Kafka position per partition (events and
    quarantined records both advance it)."""
    from pyspark.sql import functions as F
    from pyspark.sql.utils import AnalysisException

    from evcharging.contracts import LAKE_EVENTS_PATH, QUARANTINE_PATH

    try:
        events = spark.read.parquet(lakefs.s3a_uri(ref, LAKE_EVENTS_PATH))
    except AnalysisException:  # no events on the lake yet
        return {}, {}, {}
    df = events.select("run_id", "event_type", "event_id", "session_id",
                       F.col("kafka_partition").alias("partition"), F.col("kafka_offset").alias("offset"))
    counts, run_offsets = count_events(df)
    positions = {int(r.partition): int(r.offset)
                 for r in df.groupBy("partition").agg(F.max("offset").alias("offset")).collect()}
    try:
        quarantined = spark.read.parquet(lakefs.s3a_uri(ref, QUARANTINE_PATH))
        for r in quarantined.groupBy("kafka_partition").agg(F.max("kafka_offset").alias("o")).collect():
            positions[int(r.kafka_partition)] = max(positions.get(int(r.kafka_partition), -1), int(r.o))
    except AnalysisException:
        pass
    return counts, run_offsets, positions


def caught_up(kafka_run_offsets: dict[str, dict[int, int]], lake_positions: dict[int, int]) -> dict[str, bool]:
    """Per run: has the lake consumed every partition past the run's last record?"""
    return {run: all(lake_positions.get(p, -1) >= o for p, o in parts.items())
            for run, parts in kafka_run_offsets.items()}


def warehouse_stage(wh, database: str) -> dict[str, StageCounts]:
    """Counts of the warehouse facts as readers see them (``FINAL``)."""
    from evcharging.warehouse.schema import qualified

    counts: dict[str, StageCounts] = defaultdict(StageCounts)
    for run, kind, rows, distinct in wh.query_rows(
            f"SELECT run_id, event_type, count(), uniqExact(event_id) "
            f"FROM {qualified(database, 'fact_charging_events')} FINAL GROUP BY run_id, event_type"):
        counts[run].rows[kind] = int(rows)
        counts[run].distinct[kind] = int(distinct)
    for run, rows, distinct in wh.query_rows(
            f"SELECT run_id, count(), uniqExact(session_id) "
            f"FROM {qualified(database, 'fact_charging_sessions')} FINAL GROUP BY run_id"):
        counts[run].sessions_completed = int(distinct)
        counts[run].session_rows = int(rows)
    for c in counts.values():
        if c.session_rows is None:
            c.session_rows = 0
    return dict(counts)
