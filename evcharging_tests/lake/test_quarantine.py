"""Quarantine summaries: raw bytes shown safely, reasons split and counted, totals carried over."""

from __future__ import annotations

from evcharging.lake.quarantine import BatchQuarantine, QuarantineSummary, safe_preview, split_reasons
from evcharging.resources.lakefs import LakeFSResource

LAKEFS = LakeFSResource(endpoint="http://lakefs:8000/", access_key_id="k", secret_access_key="s", repository="repo")


def test_raw_bytes_are_shown_as_escaped_ascii_and_cut():
    assert safe_preview(b'{"a": 1}') == '{"a": 1}'
    assert safe_preview(b"\x00\xff<script>\n") == "\\x00\\xff<script>\\n"
    assert safe_preview(b"x" * 500, limit=10) == "xxxxxxxxxx… (500 bytes)"
    assert safe_preview(None) == "(null)"
    assert all(32 <= ord(c) < 127 for c in safe_preview("é€🙂".encode() + bytes(range(32))))


def test_reasons_are_split_into_broken_rules():
    assert split_reasons("missing field seq; soc_pct out of 0-100") == ["missing field seq", "soc_pct out of 0-100"]
    assert split_reasons("not a JSON object") == ["not a JSON object"]


def _batch(n: int, reasons: dict[str, int], rows: int) -> BatchQuarantine:
    return BatchQuarantine(f"ingested-s1-{n:010d}", f"c{n}", 1_767_600_000 + n, rows, reasons,
                           [{"partition": 0, "offset": n, "reason": "r", "value": "v"}])


def test_totals_carry_over_from_one_materialization_to_the_next():
    first = QuarantineSummary("s1").add([_batch(3, {"not a JSON object": 2}, 2)], "ingested-s1-0000000004", LAKEFS)
    carried = QuarantineSummary.from_dict(first.to_dict(), "s1")
    second = carried.add([_batch(6, {"not a JSON object": 1, "missing field seq": 1}, 1)], "ingested-s1-0000000006", LAKEFS)
    assert second.rows == 3 and second.last_tag == "ingested-s1-0000000006"
    assert second.rows_by_reason == {"not a JSON object": 3, "missing field seq": 1}
    assert [b["batch"] for b in second.batches] == ["0000000003", "0000000006"]
    assert second.batches[-1]["lakefs"] == "http://lakefs:8000/repositories/repo/objects?ref=c6&path=quarantine/events/"
    assert [e["offset"] for e in second.examples] == [3, 6]


def test_another_streams_history_is_not_carried():
    other = QuarantineSummary("old").add([_batch(1, {"x": 1}, 1)], "ingested-old-0000000001", LAKEFS)
    assert QuarantineSummary.from_dict(other.to_dict(), "s1") == QuarantineSummary("s1")
