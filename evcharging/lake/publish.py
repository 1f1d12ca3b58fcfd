"""Audit one ingest batch and publish it to main when no blocking check fails (plain Python, no Dagster).

The Dagster asset ``ingest_batch`` calls :func:`publish_batch` once per batch of its run: a run
covers one batch (a partition materialized by hand) or a range of them (what the sensor launches,
so that many small batches cost one run start-up).

Before the audit, exact copies of events (within the batch or already on main) and readings
``(session_id, seq)`` re-sent under another event id are set aside to be dropped, and conflicts
(the same id or reading, other content) to be quarantined; they never block by themselves,
conflicts count towards the quarantine share (which blocks only over enough records). Only when the
batch is published are they taken out of its branch (:mod:`evcharging.lake.withdraw`), so a blocked
batch stays as the stream wrote it.

A blocked batch is re-audited from scratch when its partition is materialized again (after the
cause was fixed), or published by an operator without its offending rows (``without_offending_rows``):
those rows go to quarantine with their reason, the operator's acceptance overrides the quarantine
share, and the merge commit records the action.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from evcharging.audit.checks import CheckOutcome, audit, offending_rows
from evcharging.audit.counts import Counts, batch_counts
from evcharging.audit.copies import find_copies
from evcharging.contracts import RESCUED_COLUMN
from evcharging.lake import ingest, main_ids
from evcharging.lake.withdraw import withdraw_rows
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import META

OPERATOR_ACTION = "publish_without_offending_rows"


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
    duplicates_dropped: int = 0  # exact copies of events met in the batch or on main
    conflicts_quarantined: int = 0  # same event id, other content
    resent_dropped: int = 0  # the same reading (session_id, seq) and content under another event id
    reading_conflicts: int = 0  # the same reading, other content
    withdrawn_by_check: dict[str, int] = field(default_factory=dict)  # the operator's action, per failing check
    withdrawn_rows: int = 0  # offending rows an operator's action moved to quarantine
    operator_action: bool = False  # an operator published the blocked batch (without offending rows, if any)
    rescued_rows: int = 0  # events with fields the contract does not know (kept in rescued_fields)

    @property
    def failed(self) -> dict[str, str]:
        return {o.name: o.description for o in self.outcomes if o.blocks}

    @property
    def counts(self) -> Counts:
        """What each check quarantined, dropped and blocked in this batch (see ``evcharging.audit.counts``)."""
        quarantined = Counter(self.withdrawn_by_check)
        quarantined.update({"no_event_already_on_main": self.conflicts_quarantined,
                            "session_sequences_consistent": self.reading_conflicts})
        return batch_counts(self.outcomes, self.status == "merged", stream_quarantined=self.quarantined_rows,
                            quarantined=quarantined,
                            dropped={"no_event_already_on_main": self.duplicates_dropped,
                                     "session_sequences_consistent": self.resent_dropped})


def publish_batch(lakefs: LakeFSResource, branch: str, reference: ReferenceIds, file_times: main_ids.FileTimes,
                  max_quarantine_share: float, merge_metadata: dict[str, str],
                  without_offending_rows: bool = False, reaudit_blocked: bool = True,
                  share_min_rows: int = 0) -> BatchPublication:
    """Audit the batch on ``branch``; merge it into main (with ``merge_metadata`` and the check summary)
    when no check fails with severity ERROR, else record the failures on the branch and keep it.
    The quarantine share blocks only a batch of at least ``share_min_rows`` records.
    ``without_offending_rows``: an operator's action, see the module docstring.

    A batch already merged is left as it is: re-running a publication changes nothing. A batch whose
    audit failed before is audited again only with ``reaudit_blocked`` (a partition materialized on
    its own, by an operator who fixed the cause); a run over a range of batches passes it by.
    """
    commit = ingest.ingest_commit(lakefs, branch)
    result = BatchPublication(branch=commit.branch, status="already merged", ingest_commit=commit.commit_id,
                              batch_id=commit.metadata.get(f"{META}batch_id"), valid_rows=commit.valid_rows,
                              quarantined_rows=commit.quarantined_rows)
    if ingest.is_merged(lakefs, commit.commit_id):
        ingest.drop_branch(lakefs, commit.branch)  # left by a publication killed after its merge
        return result
    if not reaudit_blocked and ingest.audit_failed(lakefs.repo().branch(branch).get_commit()):
        result.status = "blocked earlier"  # its failed audit is the branch's newest commit
        return result

    paths = ingest.batch_event_files(lakefs, commit)
    events = ingest.read_events(lakefs, commit.commit_id, paths)
    on_main = main_ids.batch_ids_on_main(lakefs, events, file_times)
    copies = find_copies(events, on_main.rows)
    kept, withdrawn = copies.drop_from(events), copies.quarantined
    result.duplicates_dropped, result.conflicts_quarantined = len(copies.duplicates), len(copies.conflicts)
    result.resent_dropped, result.reading_conflicts = len(copies.resent), len(copies.reading_conflicts)
    result.lookup = (f"{on_main.files} main files on the batch's dates, {on_main.files_opened} opened, "
                     f"{on_main.files_read} read (the rest are outside its times)")

    def run_audit(share: float) -> list[CheckOutcome]:
        return audit(kept, station_ids=reference.stations, vehicle_model_ids=reference.vehicle_models,
                     ids_on_main=on_main.ids, quarantined=commit.quarantined_rows + len(withdrawn),
                     max_quarantine_share=share, duplicates=result.duplicates_dropped,
                     conflicts=result.conflicts_quarantined, resent=result.resent_dropped,
                     reading_conflicts=result.reading_conflicts, share_min_rows=share_min_rows)

    result.outcomes = run_audit(max_quarantine_share)
    if result.failed and without_offending_rows:
        offending = offending_rows(kept, station_ids=reference.stations, vehicle_model_ids=reference.vehicle_models)
        kept, withdrawn = kept.drop(index=offending.index), pd.concat([withdrawn, offending])
        result.withdrawn_rows, result.operator_action = len(offending), True
        result.withdrawn_by_check = dict(Counter(str(r).split(":", 1)[0] for r in offending))
        result.outcomes = run_audit(1.0)  # the operator accepts whatever share this quarantines
    result.rows = len(kept)
    result.rescued_rows = int(kept[RESCUED_COLUMN].notna().sum()) if RESCUED_COLUMN in kept else 0
    if result.failed:
        ingest.record_failed_audit(lakefs, commit, result.failed)
        result.status = "blocked"
        return result
    counts = {f"{ingest.AUDIT}duplicates_dropped": str(result.duplicates_dropped),
              f"{ingest.AUDIT}conflicts_quarantined": str(result.conflicts_quarantined),
              f"{ingest.AUDIT}resent_readings_dropped": str(result.resent_dropped),
              f"{ingest.AUDIT}reading_conflicts_quarantined": str(result.reading_conflicts),
              f"{ingest.AUDIT}published_rows": str(result.rows)}
    # Recorded even when no row offends (a batch blocked by its quarantine share alone): the operator
    # accepted the share, and the merge commit says who did.
    if result.operator_action:
        counts |= {f"{ingest.AUDIT}action": OPERATOR_ACTION, f"{ingest.AUDIT}withdrawn_rows": str(result.withdrawn_rows)}
    note = (f"without {result.withdrawn_rows} offending rows (moved to quarantine by operator action "
            f"{OPERATOR_ACTION})" if result.operator_action else "")
    if len(copies.dropped) or len(withdrawn):
        withdraw_rows(lakefs, commit, paths, events, copies.dropped, withdrawn,
                      f"audit: drop {len(copies.duplicates)} exact copies and {len(copies.resent)} re-sent readings, "
                      f"quarantine {len(withdrawn)} rows", counts)
    summary = {o.name: "passed" if o.passed else f"{o.severity}: {o.description}" for o in result.outcomes}
    result.merge_commit = ingest.publish(lakefs, commit, {
        f"{META}ingest_branch": commit.branch, f"{META}ingest_commit": commit.commit_id,
        **{k: v for k, v in commit.metadata.items() if k.startswith(META)},
        f"{ingest.AUDIT}checks": ", ".join(f"{k}={v}" for k, v in summary.items())[:4000],
        **counts, **merge_metadata,
    }, note)
    result.status = "merged"
    return result
