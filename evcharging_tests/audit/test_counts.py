"""Per-check counts: rows count only for a published batch (so sums over runs are exact), blocks
count always, sums add checks and kinds that are missing in one of the parts, and a run's counts,
recorded on each partition it covered, are summed once."""

from __future__ import annotations

from evcharging.audit.checks import ERROR, WARN, CheckOutcome
from types import SimpleNamespace

from evcharging.audit.counts import STREAM, batch_counts, sum_counts, sum_runs

BLOCKED = [CheckOutcome("quarantine_share", False, "30 %", severity=ERROR),
           CheckOutcome("contract_schema", True, "ok")]


def test_a_published_batch_counts_its_rows_and_a_blocked_one_only_its_block():
    published = batch_counts([CheckOutcome("quarantine_share", False, "1 of 2", severity=WARN)], True,
                             stream_quarantined=2, quarantined={"no_event_already_on_main": 1},
                             dropped={"session_sequences_consistent": 3})
    assert published[STREAM]["quarantined"] == 2 and published["no_event_already_on_main"]["quarantined"] == 1
    assert published["session_sequences_consistent"]["dropped"] == 3
    assert sum(c["blocked"] for c in published.values()) == 0  # a warning does not block
    blocked = batch_counts(BLOCKED, False, stream_quarantined=900, quarantined={"no_event_already_on_main": 1})
    assert blocked["quarantine_share"]["blocked"] == 1
    assert sum(c["quarantined"] + c["dropped"] for c in blocked.values()) == 0


def test_sums_over_runs_add_every_check_and_kind():
    total = sum_counts([batch_counts(BLOCKED, False), batch_counts(BLOCKED, False),
                        {"no_event_already_on_main": {"dropped": 4}}, {}])
    assert total["quarantine_share"]["blocked"] == 2 and total["no_event_already_on_main"]["dropped"] == 4
    assert total[STREAM] == {"quarantined": 0, "dropped": 0, "blocked": 0}


def test_a_run_over_several_partitions_is_summed_once():
    def record(run_id: str, dropped: int | None):
        metadata = {} if dropped is None else {
            "audit_counts": SimpleNamespace(value={"no_event_already_on_main": {"dropped": dropped}})}
        return SimpleNamespace(run_id=run_id, asset_materialization=SimpleNamespace(metadata=metadata))

    # run r1 covered three partitions (the same metadata on each), r2 one; r0 predates the counts
    records = [record("r1", 4), record("r1", 4), record("r1", 4), record("r2", 1), record("r0", None)]
    assert sum_runs(records)["no_event_already_on_main"]["dropped"] == 5
