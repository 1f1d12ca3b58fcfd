"""What each check did to the records of the batches it audited: quarantined, dropped, blocked.

A batch's counts are recorded in its run's ``ingest_batch`` materialization (``audit_counts``) and
summed over many runs with :func:`sum_counts`. Rows are counted only for a batch that was published
(a blocked batch stays as the stream wrote it; its rows are counted when it is published later),
so the sums over any set of runs stay exact: ``stream`` is the stream's own per-record contract
check, whose quarantined records the audit only counts; ``blocked`` counts audits that blocked.
"""

from __future__ import annotations

from collections.abc import Iterable

from evcharging.audit.checks import CHECK_NAMES, CheckOutcome

KINDS = ("quarantined", "dropped", "blocked")
STREAM = "stream"  # the stream's classification of each Kafka record against the contract

Counts = dict[str, dict[str, int]]  # check → kind → count


def zero() -> Counts:
    return {name: dict.fromkeys(KINDS, 0) for name in (STREAM, *CHECK_NAMES)}


def batch_counts(outcomes: list[CheckOutcome], published: bool, *, stream_quarantined: int = 0,
                 quarantined: dict[str, int] | None = None, dropped: dict[str, int] | None = None) -> Counts:
    """One audited batch: the checks that blocked it, and, when it was ``published``, the records
    each check (``quarantined`` / ``dropped``: check → rows) and the stream took out of it."""
    counts = zero()
    for outcome in outcomes:
        counts[outcome.name]["blocked"] += outcome.blocks
    if published:
        counts[STREAM]["quarantined"] += stream_quarantined
        for kind, by_check in (("quarantined", quarantined or {}), ("dropped", dropped or {})):
            for name, rows in by_check.items():
                counts[name][kind] += rows
    return counts


def sum_counts(many: Iterable[Counts]) -> Counts:
    """The sum of several batches' or runs' counts (checks or kinds missing from one count as 0)."""
    total = zero()
    for counts in many:
        for name, kinds in (counts or {}).items():
            row = total.setdefault(name, dict.fromkeys(KINDS, 0))
            for kind, n in kinds.items():
                row[kind] = row.get(kind, 0) + int(n)
    return total


def sum_runs(records: Iterable) -> Counts:
    """The sum of ``audit_counts`` over ``ingest_batch`` materialization records (Dagster's
    ``EventLogRecord``: ``run_id`` and ``asset_materialization.metadata``), one per run: a run over a
    range of partitions records the same metadata on each partition's materialization."""
    per_run = {}
    for record in records:
        value = record.asset_materialization.metadata.get("audit_counts")
        if value is not None:
            per_run[record.run_id] = value.value
    return sum_counts(per_run.values())
