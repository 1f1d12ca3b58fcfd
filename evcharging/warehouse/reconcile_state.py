"""Reconciliation from where the last one stopped: each run takes the loads since then, not all.

The state (``reconcile_log``, one row per reconciliation) is what a full pass would rebuild: the
newest load covered, the Kafka offsets published so far as joined ranges (a handful of spans per
partition, however many loads), the runs found exact, and the differences of the loads covered,
which are reported again until someone resolves them. A run is compared again when a new load
carries its events or while it is not exact; a run found exact stays so unless a load touches it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from evcharging.warehouse.load import load_log, unsessionized_commits
from evcharging.warehouse.reconcile import Difference, Reconciliation, recorded_stage, reconcile
from evcharging.warehouse.schema import qualified, sql_str


@dataclass
class ReconcileState:
    through: str = "1970-01-01 00:00:00.000"  # loaded_at of the newest load covered
    ranges: dict = field(default_factory=dict)
    exact_runs: set[str] = field(default_factory=set)
    load_differences: list[dict] = field(default_factory=list)


def read_state(wh, database: str) -> ReconcileState:
    rows = wh.query_rows(f"SELECT toString(through), ranges, exact_runs, load_differences "
                         f"FROM {qualified(database, 'reconcile_log')} ORDER BY reconciled_at DESC LIMIT 1")
    if not rows:
        return ReconcileState()
    through, ranges, exact, differences = rows[0]
    return ReconcileState(through, json.loads(ranges), set(exact), json.loads(differences))


def _touched_runs(wh, database: str, since: str) -> set[str]:
    """The runs the loads recorded after ``since`` carried. A subquery, not a list of the loads: a
    backlog of thousands (the job stopped for days) would exceed ClickHouse's max_query_size."""
    return {r[0] for r in wh.query_rows(
        f"SELECT DISTINCT run_id FROM {qualified(database, 'load_counts')} WHERE load_commit IN "
        f"(SELECT commit_id FROM {qualified(database, 'load_log')} WHERE loaded_at > toDateTime64('{since}', 3, 'UTC'))")}


def reconcile_since_last(wh, database: str, manifests: dict, events_topic: str) -> Reconciliation:
    """Reconcile the loads since the last reconciliation and the runs they touched or that were not
    exact yet; record the new state. Runs exact before are listed as such, not compared again."""
    state = read_state(wh, database)
    loads = load_log(wh, database, f"loaded_at > toDateTime64('{state.through}', 3, 'UTC')")
    runs = (set(manifests) - state.exact_runs) | (_touched_runs(wh, database, state.through) if loads else set())
    compared = {run: m for run, m in manifests.items() if run in runs}
    result = reconcile(compared, recorded_stage(wh, database, runs), loads, events_topic, earlier=state.ranges,
                       unsessionized_loads=len(unsessionized_commits(wh, database)))
    carried = [Difference(**d) for d in state.load_differences]
    new_load_differences = [d for d in result.differences if d.subject.startswith("load ")]
    result.differences = carried + result.differences
    exact = (state.exact_runs - runs) | {row["run_id"] for row in result.runs if row["status"] == "exact"}
    result.runs += [{"run_id": run, "status": "exact (checked before)"} for run in sorted(set(manifests) - runs)]
    through = wh.query_rows(f"SELECT toString(max(loaded_at)) FROM {qualified(database, 'load_log')} FINAL "
                            f"WHERE loaded_at > toDateTime64('{state.through}', 3, 'UTC')")[0][0] if loads else state.through
    differences = json.dumps([asdict(d) for d in carried + new_load_differences])
    wh.command(f"INSERT INTO {qualified(database, 'reconcile_log')} VALUES (now64(3, 'UTC'), "
               f"toDateTime64('{through}', 3, 'UTC'), {sql_str(json.dumps(result.ranges))}, "
               f"[{', '.join(sql_str(r) for r in sorted(exact))}], {sql_str(differences)})")
    return result
