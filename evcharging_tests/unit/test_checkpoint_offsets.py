"""The stream reads each batch's Kafka offset ranges from Spark's offset log (the files as Spark 4 writes them)."""

import json

from evcharging.streaming.batches import checkpoint_offsets

TOPIC = "ev-charging-events"


def _write_log(root, batch_id: int, offsets: dict) -> None:
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1795632212785, "conf": {"spark.sql.shuffle.partitions": "4"}}
    (root / "offsets").mkdir(parents=True, exist_ok=True)
    (root / "offsets" / str(batch_id)).write_text(f"v1\n{json.dumps(meta)}\n{json.dumps({TOPIC: offsets})}")


def _write_initial(root, offsets: dict) -> None:
    (root / "sources" / "0").mkdir(parents=True)
    (root / "sources" / "0" / "0").write_text(f"\0v1\n{json.dumps({TOPIC: offsets})}")


def test_first_batch_starts_at_the_sources_initial_offsets(tmp_path):
    _write_initial(tmp_path, {"0": 0, "1": 0, "2": 5})
    _write_log(tmp_path, 0, {"0": 100, "1": 90, "2": 5})
    # Partition 2 got no new records: it is left out, as it is when ranges come from the data.
    assert checkpoint_offsets(tmp_path, 0, TOPIC) == {"0": [0, 100], "1": [0, 90]}


def test_later_batches_start_where_the_previous_one_ended(tmp_path):
    _write_initial(tmp_path, {"0": 0, "1": 0})
    _write_log(tmp_path, 0, {"0": 100, "1": 90})
    _write_log(tmp_path, 1, {"0": 250, "1": 90, "2": 7})  # partition 2 appeared meanwhile
    assert checkpoint_offsets(tmp_path, 1, TOPIC) == {"0": [100, 250], "2": [0, 7]}


def test_missing_log_or_other_topic_gives_none(tmp_path):
    assert checkpoint_offsets(tmp_path, 0, TOPIC) is None
    _write_initial(tmp_path, {"0": 0})
    _write_log(tmp_path, 0, {"0": 10})
    assert checkpoint_offsets(tmp_path, 0, "another-topic") is None
    assert checkpoint_offsets(tmp_path, 3, TOPIC) is None
