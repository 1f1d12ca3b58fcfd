"""Audit one ingest batch and publish it to main when no blocking check fails (plain Python, no Dagster).

The Dagster asset ``ingest_batch`` calls :func:`publish_batch` once per batch of its run: a run
covers one batch (a partition materialized by hand) or a range of them (what the sensor launches,
so that many small batches cost one run start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evcharging.audit.checks import CheckOutcome, audit
from evcharging.lake import ingest, main_ids
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import META


@dataclass(frozen=True)
class ReferenceIds:
    """The ids the audit checks events against, read once per run from MongoDB."""

    stations: set[str]
    vehicle_models: set[str]


@dataclass
class BatchPublication:
    """What happened to one batch: merged, blocked, or already on main from an earlier run."""

    branch: str
    status: str  # "merged" | "blocked" | "already merged" | "blocked earlier" (not audited again)
    ingest_commit: str
    batch_id: str | None
    valid_rows: int
    quarantined_rows: int
    rows: int = 0  # events audited (0 when already merged)
    merge_commit: str | None = None
    outcomes: list[CheckOutcome] = field(default_factory=list)
    lookup: str = ""  # how the already-on-main look-up went (files on the dates, opened, read)

    @property
    def failed(self) -> dict[str, str]:
        return {o.name: o.description for o in self.outcomes if o.blocks}


def publish_batch(lakefs: LakeFSResource, branch: str, reference: ReferenceIds, file_times: main_ids.FileTimes,
                  max_quarantine_share: float, merge_metadata: dict[str, str],
                  reaudit_blocked: bool = True) -> BatchPublication:
    """Audit the batch on ``branch``; merge it into main (with ``merge_metadata`` and the check summary)
    when no check fails with severity ERROR, else record the failures on the branch and keep it.

    A batch already merged is left as it is: re-running a publication changes nothing. A batch whose
    audit failed before is audited again only with ``reaudit_blocked`` (a partition materialized on
    its own, by an operator who fixed the cause); a run over a range of batches passes it by.
    """
    commit = ingest.ingest_commit(lakefs, branch)
    result = BatchPublication(branch=commit.branch, status="already merged", ingest_commit=commit.commit_id,
                              batch_id=commit.metadata.get(f"{META}batch_id"), valid_rows=commit.valid_rows,
                              quarantined_rows=commit.quarantined_rows)
    if ingest.is_merged(lakefs, commit.commit_id):
        return result
    if not reaudit_blocked and lakefs.repo().branch(branch).get_commit().id != commit.commit_id:
        result.status = "blocked earlier"  # its audit commit sits on top of the ingest commit
        return result

    events = ingest.read_events(lakefs, commit.commit_id, ingest.batch_event_files(lakefs, commit))
    on_main = main_ids.batch_ids_on_main(lakefs, events, file_times)
    result.rows = len(events)
    result.lookup = (f"{on_main.files} main files on the batch's dates, {on_main.files_opened} opened, "
                     f"{on_main.files_read} read (the rest are outside its times)")
    result.outcomes = audit(events, station_ids=reference.stations, vehicle_model_ids=reference.vehicle_models,
                            ids_on_main=on_main.ids, quarantined=commit.quarantined_rows,
                            max_quarantine_share=max_quarantine_share)
    if result.failed:
        ingest.record_failed_audit(lakefs, commit, result.failed)
        result.status = "blocked"
        return result
    summary = {o.name: "passed" if o.passed else f"{o.severity}: {o.description}" for o in result.outcomes}
    result.merge_commit = ingest.publish(lakefs, commit, {
        f"{META}ingest_branch": commit.branch, f"{META}ingest_commit": commit.commit_id,
        **{k: v for k, v in commit.metadata.items() if k.startswith(META)},
        f"{ingest.AUDIT}checks": ", ".join(f"{k}={v}" for k, v in summary.items())[:4000],
        **merge_metadata,
    })
    result.status = "merged"
    return result
