"""The audit of one ingest batch: pure functions from a pandas DataFrame (+ reference ids) to outcomes.

No Dagster and no lakeFS here, so each rule is tested on hand-made frames. The Dagster asset turns
the outcomes into blocking ``AssetCheckResult``s and merges the branch only when none failed with
severity ERROR.

Per-row problems do not reach these checks as failures: the stream quarantines records that break
the contract, and copies and conflicts (by event id or by reading) are dropped or quarantined before
the audit (:mod:`evcharging.audit.copies`). What blocks is evidence about the batch as a whole:
``SEVERITY`` says, per check, what it blocks on and why, and ``REMEDY`` what a person can do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pandas as pd

from evcharging.contracts import END_REASONS, EVENT_TYPES, FIELDS, KAFKA_COLUMNS

ERROR, WARN = "ERROR", "WARN"
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)  # before any public charging network
MAX_FUTURE = timedelta(days=400)  # simulations may run ahead of today, not years ahead
SAMPLE = 5  # failure examples kept per check

# What each check blocks on, and why that is batch-level evidence (shown as the check's description).
SEVERITY = {
    "contract_schema": "Blocks the batch on any violation: the stream quarantines each record that breaks the "
                       "contract, so a violation in its files means a writer that bypassed the stream or a contract "
                       "change (a schema break).",
    "reference_ids_exist": "Blocks the batch on an unknown station or vehicle model id: that is reference data behind "
                           "the producer, not a bad row; the rows publish once MongoDB has the id.",
    "session_sequences_consistent": "Row problems never block: a reading (session_id, seq) re-sent under another "
                                    "event id is dropped, one with other content quarantined (both ids in its reason). "
                                    "Blocks the batch only when SoC, energy or time go backwards within a session.",
    "no_event_already_on_main": "Row problems never block: exact copies (the same event id and content, in the batch "
                                "or on main) are dropped, conflicts (the same id, other content) quarantined.",
    "event_times_plausible": "Blocks the batch on an event time before 2000 or over a year ahead: a producer clock "
                             "or unit fault, which affects the batch rather than one reading.",
    "quarantine_share": "Batch-level gate: warns on any quarantined record; blocks only when the share exceeds "
                        "EVCHARGING_AUDIT_MAX_QUARANTINE_SHARE over at least EVCHARGING_AUDIT_SHARE_MIN_ROWS "
                        "records (a share of a few records means nothing).",
}
# What a person can do when the check blocks: one sentence, added to the failure's description.
_WITHOUT = ("or publish the rest with run config ops: {ingest_batch: {config: {publish_without_offending_rows: true}}} "
            "(its offending rows go to quarantine)")
REMEDY = {
    "contract_schema": f"Fix the writer, then materialize the batch's partition again, {_WITHOUT}.",
    "reference_ids_exist": "Add the missing ids to the reference data (materialize mongodb/stations or "
                           f"mongodb/vehicles), then materialize the batch's partition again, {_WITHOUT}.",
    "session_sequences_consistent": f"Fix the producer's sequence and materialize the partition again, {_WITHOUT}.",
    "no_event_already_on_main": "Materialize the batch's partition again (main moved meanwhile).",
    "event_times_plausible": f"Fix the producer's clock, then materialize the partition again, {_WITHOUT}.",
    "quarantine_share": "Read the quarantined records (asset lake_quarantine, or the branch's quarantine/events in "
                        "lakeFS); if they are acceptable, materialize the partition with run config ops: {ingest_batch: "
                        "{config: {publish_without_offending_rows: true}}} to publish the rest; else fix the producer.",
}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    severity: str = ERROR  # of a failure; a WARN failure does not block the merge
    metadata: dict = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity == ERROR


def event_schema():
    """The contract as a pandera schema (types, nullability, value domains), built from FIELDS."""
    import pandera.pandas as pa

    dtypes = {"string": "string", "int": "Int64", "float": "float64", "timestamp": "datetime64[ms, UTC]"}
    domain = {
        "event_type": [pa.Check.isin(EVENT_TYPES)],
        "end_reason": [pa.Check.isin(END_REASONS)],
        "seq": [pa.Check.ge(0)],
        "soc_pct": [pa.Check.in_range(0, 100)],
        "power_kw": [pa.Check.ge(0)], "energy_kwh": [pa.Check.ge(0)], "wait_s": [pa.Check.ge(0)],
    }
    columns = {f.name: pa.Column(dtypes[f.kind], nullable=f.nullable, checks=domain.get(f.name, []), coerce=True)
               for f in FIELDS}
    columns |= {c: pa.Column("Int64", nullable=False, coerce=True) for c in KAFKA_COLUMNS}
    return pa.DataFrameSchema(columns, strict=False)


def check_contract_schema(events: pd.DataFrame) -> CheckOutcome:
    import pandera.errors

    try:
        event_schema().validate(events, lazy=True)
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
        examples = [f"{r.column}: {r.check} (got {r.failure_case!r})" for r in cases.head(SAMPLE).itertuples()]
        return CheckOutcome("contract_schema", False, f"{len(cases)} schema violations: " + "; ".join(examples),
                            metadata={"violations": len(cases)})
    return CheckOutcome("contract_schema", True, f"{len(events)} events match contract columns, types and domains")


def check_reference_ids(events: pd.DataFrame, station_ids: set[str], vehicle_model_ids: set[str]) -> CheckOutcome:
    unknown_stations = sorted(set(events["station_id"].dropna()) - station_ids)
    unknown_models = sorted(set(events["vehicle_model_id"].dropna()) - vehicle_model_ids) \
        if "vehicle_model_id" in events else []
    if unknown_stations or unknown_models:
        parts = []
        if unknown_stations:
            parts.append(f"{len(unknown_stations)} unknown station ids, e.g. {unknown_stations[:SAMPLE]}")
        if unknown_models:
            parts.append(f"{len(unknown_models)} unknown vehicle model ids, e.g. {unknown_models[:SAMPLE]}")
        return CheckOutcome("reference_ids_exist", False, "; ".join(parts),
                            metadata={"unknown_stations": len(unknown_stations), "unknown_vehicle_models": len(unknown_models)})
    return CheckOutcome("reference_ids_exist", True,
                        f"all {events['station_id'].nunique()} stations and vehicle models are in MongoDB")


def check_session_sequences(events: pd.DataFrame, resent: int = 0, conflicts: int = 0) -> CheckOutcome:
    """Within the batch: no (session, seq) twice, and SoC, energy and time never go backwards with seq.

    Repeated readings were taken out before (see ``evcharging.audit.copies``); ``resent`` and
    ``conflicts`` say how many. A session may span batches, so only the events present are compared.
    """
    meta = {"resent_readings_dropped": resent, "reading_conflicts_quarantined": conflicts}
    problems = []
    dup = events.duplicated(["session_id", "seq"], keep=False)
    if dup.any():
        problems.append(f"{int(dup.sum())} events repeat a (session_id, seq), e.g. "
                        f"{events.loc[dup, 'session_id'].iloc[0]}")
    ordered = events.sort_values(["session_id", "seq"])
    same = ordered["session_id"].eq(ordered["session_id"].shift())
    for column in ("soc_pct", "energy_kwh", "event_time"):
        back = same & ordered[column].lt(ordered[column].shift())
        if back.any():
            problems.append(f"{column} decreases within {ordered.loc[back, 'session_id'].nunique()} sessions, "
                            f"e.g. {ordered.loc[back, 'session_id'].iloc[0]}")
    if problems:
        return CheckOutcome("session_sequences_consistent", False, "; ".join(problems), metadata=meta)
    copies = f"; {resent} re-sent readings dropped, {conflicts} conflicting readings quarantined" \
        if resent or conflicts else ""
    return CheckOutcome("session_sequences_consistent", True,
                        f"{events['session_id'].nunique()} sessions ordered and monotonic{copies}", metadata=meta)


def check_not_on_main(events: pd.DataFrame, ids_on_main: set[str], duplicates: int = 0, conflicts: int = 0) -> CheckOutcome:
    """After copies were taken out (see ``evcharging.audit.copies``), no event id is on main or twice
    in the batch; ``duplicates`` and ``conflicts`` say how many were taken out."""
    repeated = events["event_id"][events["event_id"].isin(ids_on_main)]
    twice_here = events["event_id"][events["event_id"].duplicated()]
    meta = {"duplicates_dropped": duplicates, "conflicts_quarantined": conflicts}
    if len(repeated) or len(twice_here):
        return CheckOutcome(
            "no_event_already_on_main", False,
            f"{len(repeated)} event ids already on main, {len(twice_here)} repeated in the batch, "
            f"e.g. {sorted(set(repeated) | set(twice_here))[:SAMPLE]}",
            metadata={**meta, "already_on_main": len(repeated), "repeated_in_batch": len(twice_here)})
    copies = f"; {duplicates} exact copies dropped, {conflicts} conflicts quarantined" if duplicates or conflicts else ""
    return CheckOutcome("no_event_already_on_main", True, f"{len(events)} event ids are new to main{copies}",
                        metadata=meta)


def check_event_times(events: pd.DataFrame, now: datetime | None = None) -> CheckOutcome:
    now = now or datetime.now(UTC)
    times = pd.to_datetime(events["event_time"], utc=True)
    early, late = times < EARLIEST_PLAUSIBLE, times > now + MAX_FUTURE
    if early.any() or late.any():
        return CheckOutcome("event_times_plausible", False,
                            f"{int(early.sum())} events before {EARLIEST_PLAUSIBLE.date()}, {int(late.sum())} more "
                            f"than {MAX_FUTURE.days} days ahead of now; range {times.min()} – {times.max()}")
    return CheckOutcome("event_times_plausible", True, f"event times {times.min()} – {times.max()}",
                        metadata={"first_event": str(times.min()), "last_event": str(times.max())})


def check_quarantine_share(valid: int, quarantined: int, max_share: float, min_rows: int = 0) -> CheckOutcome:
    """The share of the batch's records that were quarantined: a warning whenever there are some; it
    blocks above ``max_share`` only over at least ``min_rows`` records, where a share is evidence
    about the batch (one bad record of two is 50 % and says nothing)."""
    total = valid + quarantined
    share = quarantined / max(total, 1)
    meta = {"quarantined_rows": quarantined, "quarantine_share": round(share, 6), "max_share": max_share,
            "min_rows": min_rows}
    if quarantined == 0:
        return CheckOutcome("quarantine_share", True, "no quarantined records", metadata=meta)
    text = f"{quarantined} of {total} records quarantined ({share:.2%}; limit {max_share:.2%}"
    if total < min_rows:
        return CheckOutcome("quarantine_share", False, f"{text} applies from {min_rows} records)", severity=WARN,
                            metadata=meta)
    return CheckOutcome("quarantine_share", False, text + ")", severity=ERROR if share > max_share else WARN,
                        metadata=meta)


def with_remedy(outcome: CheckOutcome) -> CheckOutcome:
    """A blocking failure with what a person can do about it appended (other outcomes as they are)."""
    if not outcome.blocks:
        return outcome
    return replace(outcome, description=f"{outcome.description}. What to do: {REMEDY[outcome.name]}")


def audit(events: pd.DataFrame, *, station_ids: set[str], vehicle_model_ids: set[str], ids_on_main: set[str],
          quarantined: int, max_quarantine_share: float, now: datetime | None = None, duplicates: int = 0,
          conflicts: int = 0, resent: int = 0, reading_conflicts: int = 0, share_min_rows: int = 0) -> list[CheckOutcome]:
    """Every check on one batch, in a stable order; a blocking failure says what to do about it."""
    return [with_remedy(o) for o in (
        check_contract_schema(events),
        check_reference_ids(events, station_ids, vehicle_model_ids),
        check_session_sequences(events, resent, reading_conflicts),
        check_not_on_main(events, ids_on_main, duplicates, conflicts),
        check_event_times(events, now),
        check_quarantine_share(len(events), quarantined, max_quarantine_share, share_min_rows),
    )]


CHECK_NAMES = ("contract_schema", "reference_ids_exist", "session_sequences_consistent", "no_event_already_on_main",
               "event_times_plausible", "quarantine_share")


def offending_rows(events: pd.DataFrame, *, station_ids: set[str], vehicle_model_ids: set[str],
                   now: datetime | None = None) -> pd.Series:
    """Row label → reason, for every row that makes a row-level check fail (the first reason found):
    what an operator's "publish without offending rows" moves to quarantine. A broken session
    sequence offends with all of its rows, since no one row of it can be said to be the wrong one."""
    import pandera.errors

    reasons: dict = {}

    def mark(mask: pd.Series, reason: str) -> None:
        for label in events.index[mask.fillna(False).to_numpy(bool)]:
            reasons.setdefault(label, reason)

    try:
        event_schema().validate(events, lazy=True)
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases.dropna(subset=["index"])
        for case in cases.itertuples():
            reasons.setdefault(case.index, f"contract_schema: {case.column} {case.check}")
    mark(~events["station_id"].isin(station_ids), "reference_ids_exist: unknown station_id")
    if "vehicle_model_id" in events:
        mark(events["vehicle_model_id"].notna() & ~events["vehicle_model_id"].isin(vehicle_model_ids),
             "reference_ids_exist: unknown vehicle_model_id")
    times = pd.to_datetime(events["event_time"], utc=True, errors="coerce")
    mark((times < EARLIEST_PLAUSIBLE) | (times > (now or datetime.now(UTC)) + MAX_FUTURE),
         "event_times_plausible: implausible event_time")
    ordered = events.sort_values(["session_id", "seq"])
    same = ordered["session_id"].eq(ordered["session_id"].shift())
    broken = ordered.duplicated(["session_id", "seq"], keep=False)
    for column in ("soc_pct", "energy_kwh", "event_time"):
        broken |= same & ordered[column].lt(ordered[column].shift())
    mark(events["session_id"].isin(ordered.loc[broken, "session_id"]), "session_sequences_consistent: broken sequence")
    return pd.Series(reasons, dtype=object)
