"""The stream reads each batch's Kafka offset ranges from Spark's offset log (the files as Spark 4
writes them), and a missing entry is an error naming the file, never a silent second pass over Kafka."""

import json

import pytest

from evcharging.streaming.batches import checkpoint_offsets
from evcharging.streaming.checkpoint import CheckpointError

TOPIC = "ev-charging-events"


def _write_log(root, batch_id: int, offsets: dict) -> None:
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1795632212785, "conf": {"spark.sql.shuffle.partitions": "4"}}
    (root / "offsets").mkdir(parents=True, exist_ok=True)
    (root / "offsets" / str(batch_id)).write_text(f"v1\n{json.dumps(meta)}\n{json.dumps({TOPIC: offsets})}")


def _write_initial(root, offsets: dict) -> None:
    (root / "sources" / "0").mkdir(parents=True)
    (root / "sources" / "0" / "0").write_text(f"\0v1\n{json.dumps({TOPIC: offsets})}")


def _reader(root):
    """What CheckpointFiles.read_text does on Hadoop's FileSystem, for a local folder."""
    return lambda relative: (root / relative).read_text() if (root / relative).exists() else None


def test_first_batch_starts_at_the_sources_initial_offsets(tmp_path):
    _write_initial(tmp_path, {"0": 0, "1": 0, "2": 5})
    _write_log(tmp_path, 0, {"0": 100, "1": 90, "2": 5})
    # Partition 2 got no new records: it is left out, as it is when ranges come from the data.
    assert checkpoint_offsets(_reader(tmp_path), 0, TOPIC) == {"0": [0, 100], "1": [0, 90]}


def test_later_batches_start_where_the_previous_one_ended(tmp_path):
    _write_initial(tmp_path, {"0": 0, "1": 0})
    _write_log(tmp_path, 0, {"0": 100, "1": 90})
    _write_log(tmp_path, 1, {"0": 250, "1": 90, "2": 7})  # partition 2 appeared meanwhile
    assert checkpoint_offsets(_reader(tmp_path), 1, TOPIC) == {"0": [100, 250], "2": [0, 7]}


def test_a_missing_entry_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="for batch 0 in offsets/0 and sources/0/0"):
        checkpoint_offsets(_reader(tmp_path), 0, TOPIC)
    _write_initial(tmp_path, {"0": 0})
    _write_log(tmp_path, 0, {"0": 10})
    with pytest.raises(CheckpointError, match="no offsets of topic 'another-topic' for batch 0"):
        checkpoint_offsets(_reader(tmp_path), 0, "another-topic")
    with pytest.raises(CheckpointError, match="for batch 3 in offsets/3 and offsets/2"):
        checkpoint_offsets(_reader(tmp_path), 3, TOPIC)
