"""A publication's per-check counts: each row taken out is counted under the check that took it out
(copies and conflicts by event id or by reading, an operator's withdrawal by the failing check, the
stream's quarantine under ``stream``), only once the batch is published; a block always counts."""

from __future__ import annotations

from evcharging.audit.checks import ERROR, CheckOutcome
from evcharging.lake.publish import BatchPublication


def _publication(status: str, outcomes: list[CheckOutcome] | None = None) -> BatchPublication:
    return BatchPublication(branch="ingest-e-0000000001", status=status, ingest_commit="c1", batch_id="1",
                            valid_rows=40, quarantined_rows=2, duplicates_dropped=3, conflicts_quarantined=1,
                            resent_dropped=4, reading_conflicts=5, withdrawn_by_check={"reference_ids_exist": 6},
                            outcomes=outcomes or [])


def test_a_published_batch_counts_every_row_under_its_check():
    counts = _publication("merged").counts
    assert counts["stream"]["quarantined"] == 2
    assert counts["no_event_already_on_main"] == {"quarantined": 1, "dropped": 3, "blocked": 0}
    assert counts["session_sequences_consistent"] == {"quarantined": 5, "dropped": 4, "blocked": 0}
    assert counts["reference_ids_exist"]["quarantined"] == 6
    # every Kafka record the publish did not pass on is counted once
    assert sum(c["quarantined"] + c["dropped"] for c in counts.values()) == 2 + 1 + 3 + 5 + 4 + 6


def test_a_blocked_batch_counts_its_block_and_no_rows():
    counts = _publication("blocked", [CheckOutcome("quarantine_share", False, "30 %", severity=ERROR)]).counts
    assert counts["quarantine_share"]["blocked"] == 1
    assert sum(c["quarantined"] + c["dropped"] for c in counts.values()) == 0
