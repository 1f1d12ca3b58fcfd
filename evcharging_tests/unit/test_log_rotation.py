"""The local stack's service logs are rotated under a service that keeps writing (copy, then truncate)."""

from __future__ import annotations

import subprocess
import sys
import time

from evcharging.stack.process import rotate_logs


def test_a_writer_keeps_appending_to_the_emptied_log(tmp_path):
    log = tmp_path / "ferretdb.log"
    small = tmp_path / "lakefs.log"
    small.write_text("short\n")
    # A child that writes through the descriptor it was given, opened for appending as
    # ManagedProcess.start opens it: one line now, one once told to (after the rotation).
    go = tmp_path / "go"
    script = ("import os, sys, time\nprint('x' * 2000, flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\nprint('after', flush=True)\n")
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-c", script], stdout=out)
    deadline = time.monotonic() + 10
    while log.stat().st_size < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert rotate_logs(tmp_path, max_bytes=1000) == ["ferretdb.log"]
    go.touch()
    assert child.wait(10) == 0

    assert log.read_text() == "after\n"  # at the start of the emptied file: no hole of NUL bytes
    assert (tmp_path / "ferretdb.log.1").read_text() == "x" * 2000 + "\n"
    assert small.read_text() == "short\n" and not (tmp_path / "lakefs.log.1").exists()


def test_a_second_rotation_replaces_the_previous_file_and_a_missing_folder_is_nothing(tmp_path):
    log = tmp_path / "kafka.log"
    log.write_text("first\n" * 100)
    rotate_logs(tmp_path, max_bytes=10)
    log.write_text("second\n" * 100)
    assert rotate_logs(tmp_path, max_bytes=10) == ["kafka.log"]
    assert (tmp_path / "kafka.log.1").read_text() == "second\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kafka.log", "kafka.log.1"]
    assert rotate_logs(tmp_path / "absent", max_bytes=10) == []
