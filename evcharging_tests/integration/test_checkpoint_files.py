"""The stream's checkpoint files through Hadoop's FileSystem, on MinIO's checkpoint bucket (s3a://)
and in a local folder: read, missing, writable — and a location Spark cannot write is one clear
error at start, naming the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evcharging.resources.from_settings import minio_s3_client
from evcharging.settings import PROJECT_DIR
from evcharging.streaming.checkpoint import CheckpointError, CheckpointFiles

pytestmark = pytest.mark.integration


def test_checkpoint_files_on_object_storage_and_on_disk(spark, stack_settings, unique_name, tmp_path):
    bucket = stack_settings.minio_checkpoint_bucket
    minio_s3_client(stack_settings).put_object(Bucket=bucket, Key=f"files-{unique_name}/offsets/0", Body=b"v1\n{}\n")
    (tmp_path / "offsets").mkdir()
    (tmp_path / "offsets" / "0").write_text("v1\n{}\n")
    for uri in (f"s3a://{bucket}/files-{unique_name}/", str(tmp_path), f"file://{tmp_path}"):
        files = CheckpointFiles(spark, uri)
        assert files.read_text("offsets/0") == "v1\n{}\n", uri
        assert files.read_text("offsets/1") is None, uri
        files.check_writable()
    listed = minio_s3_client(stack_settings).list_objects_v2(Bucket=bucket, Prefix=f"files-{unique_name}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"files-{unique_name}/offsets/0"]  # the probe is gone


def test_an_unwritable_checkpoint_is_one_clear_error(spark, stack_settings, tmp_path):
    with pytest.raises(CheckpointError, match="cannot write to s3a://no-such-bucket-here/x"):
        CheckpointFiles(spark, "s3a://no-such-bucket-here/x").check_writable()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "evcharging.streaming", "--available-now", "--checkpoint",
                             str(blocker / "checkpoint")], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"stream: checkpoint location {blocker / 'checkpoint'} (EVCHARGING_SPARK_CHECKPOINT_DIR) is not writable" \
        in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
